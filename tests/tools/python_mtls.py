#!/usr/bin/env python3
"""python_mtls.py: the ctypes binding (client-shim/python/keyhold.py) against
a real keyholdd and `openssl s_server -rev` (tests/integration/python_binding.sh).

  python_mtls.py SIDECAR_SOCK PORT ABSENT_SOCK LAYOUT_FILE MISMATCH_CODE PKI_DIR

LAYOUT_FILE: lines "STRUCT sizeof FIELD=offset ..." printed by a C program
compiled against keyhold.h. MISMATCH_CODE: the code name `keyhold connect`
(the C shim) reports for a wrong --expect-peer. PKI_DIR: make-test-pki.sh's,
for `openssl s_client` against Client.accept. Prints "ok - ..." / "not ok - ..."; exits 1 on
any failure."""
import gc
import os
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "client-shim", "python"))
import keyhold  # noqa: E402

CLIENT = "spiffe://example.org/client"
PEER = "spiffe://example.org/peer-server"
sidecar, port, absent, layout_file, mismatch_code, pki = sys.argv[1:7]
port = int(port)
fails = 0


def check(ok, what):
    global fails
    print(("ok - " if ok else "not ok - ") + what, flush=True)
    fails += not ok


def expect_error(fn, code_name, text, what):
    try:
        fn()
    except keyhold.KeyholdError as e:
        check(e.code_name == code_name and text in e.message,
              f"{what}: KeyholdError {e.code_name} ({e.message})")
        return e
    check(False, f"{what}: no KeyholdError")


def dial():
    return socket.create_connection(("127.0.0.1", port), timeout=5)


def blocking(s):
    s.settimeout(None)
    return s


def read_line(c):
    data = b""
    while not data.endswith(b"\n"):
        chunk = c.read(4096)
        if not chunk:
            break
        data += chunk
    return data


def read_exact(c, n):
    data = b""
    while len(data) < n:
        chunk = c.read(n - len(data))
        if not chunk:
            break
        data += chunk
    return data


# 1. Struct layout: ctypes against the C compiler.
want = {}
with open(layout_file) as f:
    for line in f:
        name, size, *fields = line.split()
        want[name] = (int(size), {k: int(v) for k, v in (x.split("=") for x in fields)})
got = keyhold.layout()
for name in sorted(want):
    check(got.get(name) == want[name], f"layout of {name}: ctypes {got.get(name)} C {want[name]}")
check(set(got) <= set(want), "every mirrored struct was checked against C")

# 2. Library loading: explicit path and $KEYHOLD_LIB give the same library.
lib = keyhold.load_library(os.environ["KEYHOLD_LIB"])
check(lib.kh_code_name(14) == b"UNAVAILABLE", "kh_code_name through ctypes")

# 3. No sidecar at the path: UNAVAILABLE, promptly.
with keyhold.Client(absent) as kc, dial() as s:
    t0 = time.monotonic()
    expect_error(lambda: kc.connect(blocking(s), identity=CLIENT, expect_peers=[PEER]),
                 "UNAVAILABLE", "sidecar unavailable at " + absent, "missing sidecar socket")
    check(time.monotonic() - t0 < 5, "missing sidecar: failed within 5 s")

with keyhold.Client(sidecar) as kc:
    # 4. mTLS to openssl s_server: info, a line each way, KeyUpdate, more data.
    s = blocking(dial())
    c = kc.connect(s, identity=CLIENT, expect_peers=[PEER], timeout_ms=5000)
    fd = s.fileno()
    del s  # the Conn keeps the socket object, so the fd stays open
    gc.collect()
    i = c.info
    print(f"# info: {i}")
    check(isinstance(i, keyhold.ConnInfo) and i.version == "TLSv1.3", f"version {i.version}")
    check(i.ciphersuite.startswith("TLS_"), f"ciphersuite {i.ciphersuite}")
    check(i.peer_identity == PEER, f"peer identity verified: {i.peer_identity}")
    check(i.local_identity == CLIENT, f"local identity: {i.local_identity}")
    check(i.alpn == "" and i.resumed is False, "no ALPN, not resumed")
    check(c.fileno() == fd and c.sock.fileno() == fd, "Conn holds the socket (fd still open)")
    c.write(b"hello from python\n")
    line = read_line(c)
    check(line == b"nohtyp morf olleh\n", f"wrote a line, read it back reversed: {line!r}")
    c.key_update(request_peer=True)
    c.write(b"after key update\n")
    line = read_line(c)
    check(line == b"etadpu yek retfa\n", f"data both ways after our KeyUpdate: {line!r}")
    lines = [bytes([97 + k]) * 8000 + b"%d\n" % k for k in range(3)]
    c.write(b"".join(lines))  # 24 kB: two records
    want = b"".join(x[-2::-1] + b"\n" for x in lines)
    back = read_exact(c, len(want))
    check(back == want, f"24 kB in one write (two records), 3 lines back: {len(back)} bytes")
    c.shutdown()  # our close_notify; s_server answers with its own
    try:
        check(c.read(100) == b"", "after our close_notify, read() gives b'' at the peer's")
    except keyhold.KeyholdError as e:
        check(False, f"read after shutdown: {e}")
    c.close()
    c.close()  # idempotent
    try:
        c.read(1)
        check(False, "read after close raised")
    except ValueError:
        check(True, "read after close: ValueError")
    c.sock.close()

    # 5. Wrong expected peer: the sidecar's refusal, with the code the C shim
    # reports (a failed handshake travels as gRPC INVALID_ARGUMENT).
    with dial() as s:
        e = expect_error(lambda: kc.connect(blocking(s), identity=CLIENT,
                                            expect_peers=["spiffe://example.org/somebody-else"]),
                         mismatch_code, f"peer {PEER} is not one of the 1 expected peers",
                         f"wrong expected peer (C shim: {mismatch_code})")
        check(e is not None and lib.kh_code_name(e.code).decode() == mismatch_code
              and str(e).startswith(mismatch_code + ": "),
              f"KeyholdError carries code {e and e.code} and formats as NAME: message")

    # 6. Unknown local identity: the sidecar's NOT_FOUND-style refusal.
    with dial() as s:
        try:
            kc.connect(blocking(s), identity="spiffe://example.org/nobody", expect_peers=[PEER])
            check(False, "unknown identity refused")
        except keyhold.KeyholdError as e:
            check("unknown local identity" in e.message, f"unknown identity: {e.code_name} ({e.message})")

    # 7. Arguments checked before C sees them.
    for kw, what in (({"expect_peers": ["x"] * 17}, "17 expected peers"),):
        try:
            kc.connect(-1, **kw)
            check(False, f"{what} refused")
        except ValueError:
            check(True, f"{what}: ValueError")
    with dial() as s:
        try:
            kc.connect(s, identity=CLIENT)  # create_connection(timeout=5): non-blocking fd
            check(False, "socket with a timeout refused")
        except ValueError:
            check(True, "socket with a timeout: ValueError (calls need a blocking fd)")

    # 8. Server side: Client.accept for openssl s_client (mTLS, peer-client).
    with socket.create_server(("127.0.0.1", 0)) as ls:
        cli = subprocess.Popen(
            ["openssl", "s_client", "-tls1_3", "-quiet", "-connect", "127.0.0.1:%d" % ls.getsockname()[1],
             "-CAfile", f"{pki}/ca/ca.crt", "-cert", f"{pki}/peer/client.crt",
             "-key", f"{pki}/peer/client.key"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        ls.settimeout(5)
        a, _ = ls.accept()
        with blocking(a), kc.accept(a, identity="spiffe://example.org/server",
                                    expect_peers=["spiffe://example.org/peer-client"],
                                    timeout_ms=5000) as sc:
            check(sc.info.peer_identity == "spiffe://example.org/peer-client"
                  and sc.info.local_identity == "spiffe://example.org/server",
                  f"accept: client certificate verified ({sc.info.peer_identity})")
            cli.stdin.write(b"from s_client\n")
            cli.stdin.flush()
            check(read_exact(sc, 14) == b"from s_client\n", "accept: s_client -> Python data")
            sc.write(b"from python\n")
            check(cli.stdout.readline() == b"from python\n", "accept: Python -> s_client data")
        cli.stdin.close()
        try:
            cli.wait(5)
        except subprocess.TimeoutExpired:
            cli.kill()
            cli.wait()

    # 9. The server survived; a Conn left to the garbage collector is freed,
    # and a Conn still open when the Client closes is freed first.
    with blocking(dial()) as s, kc.connect(s, identity=CLIENT, expect_peers=[PEER]) as c2:
        c2.write(b"abc\n")
        check(read_line(c2) == b"cba\n", "second connection (with blocks) works")
    s = blocking(dial())
    c3 = kc.connect(s, identity=CLIENT, expect_peers=[PEER])
    del c3
    gc.collect()
    s.close()
    check(True, "Conn freed by __del__")
    c4 = kc.connect(blocking(dial()), identity=CLIENT, expect_peers=[PEER])
kc_closed = kc._kc is None and c4._c is None
check(kc_closed, "Client.__exit__ freed the client and its open Conn")
try:
    kc.connect(-1)
    check(False, "connect on a closed Client raised")
except ValueError:
    check(True, "connect on a closed Client: ValueError")
c4.sock.close()

print(f"# python binding: {'FAILED' if fails else 'all passed'}")
sys.exit(1 if fails else 0)
