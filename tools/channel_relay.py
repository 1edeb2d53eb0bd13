#!/usr/bin/env python3
"""channel_relay.py: an HTTP(S) mailbox that carries secure-channel frames
between two `keyhold channel --via https://...` ends, the way a web relay,
a webhook service or anything behind a corporate proxy would.

  POST /box/NAME      body: one frame (opaque bytes) -> 204
  GET  /box/NAME      the oldest frame in NAME (200, then it is gone), or
                      204 after waiting up to 1 s for one

Usage: channel_relay.py --listen HOST:PORT [--cert CRT --key KEY]
                        [--client-ca CA] [--max-frame BYTES]
With --cert it serves HTTPS; with --client-ca it also demands a client
certificate (mTLS) from that CA. Prints "relay: listening on URL" once
ready, and one line per request (method, box, size: never the content).
Frames over --max-frame (default 1 MiB + 64) get 413; unknown paths 404.
Only for tests and demos: it keeps everything in memory."""
import argparse
import collections
import http.server
import ssl
import sys
import threading

BOXES = collections.defaultdict(collections.deque)
COND = threading.Condition()


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    max_frame = 1 << 20

    def log_message(self, fmt, *args):
        pass

    def box(self):
        if not self.path.startswith("/box/") or len(self.path) <= 5 or "/" in self.path[5:]:
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return None
        return self.path[5:]

    def do_POST(self):
        name = self.box()
        if name is None:
            return
        n = int(self.headers.get("Content-Length", "0"))
        if n < 0 or n > self.max_frame:
            self.send_response(413)
            self.send_header("Content-Length", "0")
            self.send_header("Connection", "close")
            self.end_headers()
            return
        body = self.rfile.read(n)
        with COND:
            BOXES[name].append(body)
            COND.notify_all()
        print(f"relay: POST {name} {len(body)} bytes", file=sys.stderr, flush=True)
        self.send_response(204)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_GET(self):
        name = self.box()
        if name is None:
            return
        with COND:
            COND.wait_for(lambda: BOXES[name], timeout=1.0)
            body = BOXES[name].popleft() if BOXES[name] else None
        if body is None:
            self.send_response(204)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        print(f"relay: GET {name} {len(body)} bytes", file=sys.stderr, flush=True)
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--listen", required=True)
    ap.add_argument("--cert")
    ap.add_argument("--key")
    ap.add_argument("--client-ca")
    ap.add_argument("--max-frame", type=int, default=(1 << 20) + 64)
    a = ap.parse_args()
    host, _, port = a.listen.rpartition(":")
    Handler.max_frame = a.max_frame
    srv = http.server.ThreadingHTTPServer((host, int(port)), Handler)
    srv.daemon_threads = True
    scheme = "http"
    if a.cert:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(a.cert, a.key)
        if a.client_ca:
            ctx.verify_mode = ssl.CERT_REQUIRED
            ctx.load_verify_locations(a.client_ca)
        srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
        scheme = "https"
    print(f"relay: listening on {scheme}://{host}:{srv.server_address[1]}", file=sys.stderr,
          flush=True)
    srv.serve_forever()


if __name__ == "__main__":
    main()
