#!/usr/bin/env python3
"""conn_flood: open many connections to keyholdd's Unix socket and hold them.

  conn_flood.py --socket PATH --count N --mode silent|partial|preface|garbage
                [--hold SECONDS] [--until-closed]

silent: send nothing; partial: the first 10 bytes of the HTTP/2 client
preface; preface: the whole preface and an empty SETTINGS frame, then
nothing (an idle HTTP/2 client); garbage: 24 bytes that are not a preface.
Holds every connection for --hold seconds (bounded) and prints one line:
  opened=N failed=F closed_fast=A closed_later=B open=C last_close_s=X
closed_fast: closed by keyholdd within 0.5 s of connecting (refused at
accept); closed_later: closed after that (a timeout); open: still open.
"""
import argparse
import resource
import selectors
import socket
import time

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
SETTINGS = b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--socket", required=True)
    ap.add_argument("--count", type=int, required=True)
    ap.add_argument("--mode", choices=["silent", "partial", "preface", "garbage"], required=True)
    ap.add_argument("--hold", type=float, default=5.0)
    ap.add_argument("--until-closed", action="store_true")
    a = ap.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    payload = {"silent": b"", "partial": PREFACE[:10], "preface": PREFACE + SETTINGS,
               "garbage": b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"[:24]}[a.mode]
    sel = selectors.DefaultSelector()
    opened = failed = fast = later = 0
    last_close = 0.0
    start = time.monotonic()
    for _ in range(min(a.count, hard - 64)):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.connect(a.socket)
            if payload:
                s.sendall(payload)
        except OSError:
            failed += 1
            s.close()
            continue
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ, time.monotonic())
        opened += 1
    end = time.monotonic() + min(a.hold, 600.0)
    while time.monotonic() < end and sel.get_map():
        for key, _ in sel.select(timeout=0.1):
            s = key.fileobj
            try:
                data = s.recv(65536)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError:
                data = b""
            if data:
                continue  # the server's SETTINGS and the like
            age = time.monotonic() - key.data
            if age < 0.5:
                fast += 1
            else:
                later += 1
            last_close = time.monotonic() - start
            sel.unregister(s)
            s.close()
        if a.until_closed and not sel.get_map():
            break
    still = len(sel.get_map())
    print(f"opened={opened} failed={failed} closed_fast={fast} closed_later={later} "
          f"open={still} last_close_s={last_close:.1f}", flush=True)
    for key in list(sel.get_map().values()):
        key.fileobj.close()


if __name__ == "__main__":
    main()
