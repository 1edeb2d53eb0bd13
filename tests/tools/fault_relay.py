#!/usr/bin/env python3
"""fault_relay.py LISTEN_PORT TARGET_PORT PASS_FRAMES: a TCP relay on
127.0.0.1 for `keyhold channel --framing binary` (4-byte big-endian length,
then the frame) that misbehaves like a bad network path, in the direction
from the side that connects to the target. The first PASS_FRAMES frames (the
handshake) go through untouched; after them, of each group of six frames:
  1st and 2nd: swapped (reordered)
  3rd: sent twice (duplicated)
  4th: dropped
  5th: one bit flipped in its ciphertext
  6th: untouched
The other direction is copied as is. Prints what it did to stderr, one line
per frame. One connection, then it exits."""
import socket
import sys
import threading


def read_frame(sock):
    hdr = b""
    while len(hdr) < 4:
        chunk = sock.recv(4 - len(hdr))
        if not chunk:
            return None
        hdr += chunk
    n = int.from_bytes(hdr, "big")
    body = b""
    while len(body) < n:
        chunk = sock.recv(n - len(body))
        if not chunk:
            return None
        body += chunk
    return body


def send_frame(sock, frame):
    sock.sendall(len(frame).to_bytes(4, "big") + frame)


def faulty(src, dst, pass_frames):
    count = 0
    held = None
    while True:
        frame = read_frame(src)
        if frame is None:
            break
        count += 1
        if count <= pass_frames:
            send_frame(dst, frame)
            continue
        slot = (count - pass_frames - 1) % 6
        if slot == 0:
            held = frame
            print("relay: holding a frame back (reorder)", file=sys.stderr)
        elif slot == 1:
            send_frame(dst, frame)
            send_frame(dst, held)
            print("relay: reordered two frames", file=sys.stderr)
        elif slot == 2:
            send_frame(dst, frame)
            send_frame(dst, frame)
            print("relay: duplicated a frame", file=sys.stderr)
        elif slot == 3:
            print("relay: dropped a frame", file=sys.stderr)
        elif slot == 4:
            b = bytearray(frame)
            b[len(b) // 2 + 11] ^= 0x04  # in the ciphertext, past the 22-byte header
            send_frame(dst, bytes(b))
            print("relay: flipped a bit", file=sys.stderr)
        else:
            send_frame(dst, frame)
    dst.shutdown(socket.SHUT_WR)


def copy(src, dst):
    while True:
        data = src.recv(65536)
        if not data:
            break
        dst.sendall(data)
    dst.shutdown(socket.SHUT_WR)


def main():
    listen_port, target_port, pass_frames = map(int, sys.argv[1:4])
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", listen_port))
    srv.listen(1)
    print("relay: listening", file=sys.stderr, flush=True)
    srv.settimeout(60)
    client, _ = srv.accept()
    upstream = socket.create_connection(("127.0.0.1", target_port), timeout=60)
    back = threading.Thread(target=copy, args=(upstream, client), daemon=True)
    back.start()
    try:
        faulty(client, upstream, pass_frames)
    except OSError:
        pass
    back.join(60)


if __name__ == "__main__":
    main()
