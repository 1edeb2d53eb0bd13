"""keyhold.py: a ctypes binding of libkeyhold (client-shim/keyhold.h), no
compiled extension: the shared library is loaded at run time.

    import socket, keyhold
    with keyhold.Client("/run/keyhold/keyhold.sock") as kc, \
         socket.create_connection(("api.example.org", 443)) as sock, \
         kc.connect(sock, identity="spiffe://example.org/client",
                    expect_peers=["spiffe://example.org/server"]) as c:
        c.write(b"ping")
        print(c.info.peer_identity, c.read(4096))

Calls block (the socket must be in blocking mode); ctypes releases the GIL
for the duration of each call. A Conn is used by one thread at a time; a
Client may be shared. docs/SHIM.md, section "Python".
"""
import ctypes
import ctypes.util
import dataclasses
import os
import weakref

MAX_PEERS = 16       # KH_MAX_PEERS
MAX_PROTOCOLS = 16   # KH_MAX_PROTOCOLS
ERROR_MSG_MAX = 256  # KH_ERROR_MSG_MAX

_p = ctypes.c_char_p


class _Error(ctypes.Structure):  # kh_error
    _fields_ = [("code", ctypes.c_int), ("msg", ctypes.c_char * ERROR_MSG_MAX)]


class _HandshakeOpts(ctypes.Structure):  # kh_handshake_opts
    _fields_ = [("local_identity", _p),
                ("expect_peers", _p * MAX_PEERS),
                ("expect_peer_count", ctypes.c_size_t),
                ("alpn", _p * MAX_PROTOCOLS),
                ("alpn_count", ctypes.c_size_t),
                ("server_name", _p),
                ("timeout_ms", ctypes.c_int),
                ("access_token", _p)]


class _ConnInfo(ctypes.Structure):  # kh_conn_info
    _fields_ = [("version", _p),
                ("ciphersuite", _p),
                ("alpn", _p),
                ("peer_identity", _p),
                ("local_identity", _p),
                ("connection_id", ctypes.c_uint64),
                ("resumed", ctypes.c_int)]


_STRUCTS = {"kh_error": _Error, "kh_handshake_opts": _HandshakeOpts,
            "kh_conn_info": _ConnInfo}


def layout():
    """{C struct name: (sizeof, {field: offsetof})} as ctypes lays them out,
    to compare with the C compiler's view of keyhold.h."""
    return {name: (ctypes.sizeof(s), {f[0]: getattr(s, f[0]).offset for f in s._fields_})
            for name, s in _STRUCTS.items()}


class KeyholdError(Exception):
    """A libkeyhold failure: code (kh_code), code_name ("UNAVAILABLE"), message."""

    def __init__(self, code, code_name, message):
        super().__init__(code, code_name, message)
        self.code, self.code_name, self.message = code, code_name, message

    def __str__(self):
        return f"{self.code_name}: {self.message}"


@dataclasses.dataclass(frozen=True)
class ConnInfo:
    version: str
    ciphersuite: str
    alpn: str
    peer_identity: str
    local_identity: str
    resumed: bool
    connection_id: int = 0


_lib = None
_PTR = ctypes.c_void_p
_ERR = ctypes.POINTER(_Error)
_SIGNATURES = {  # name: (restype, argtypes)
    "kh_code_name": (_p, [ctypes.c_int]),
    "kh_client_new": (_PTR, [_p, _ERR]),
    "kh_client_free": (None, [_PTR]),
    "kh_connect_fd": (_PTR, [_PTR, ctypes.c_int, ctypes.POINTER(_HandshakeOpts), _ERR]),
    "kh_accept_fd": (_PTR, [_PTR, ctypes.c_int, ctypes.POINTER(_HandshakeOpts), _ERR]),
    "kh_conn_read": (ctypes.c_ssize_t, [_PTR, ctypes.c_void_p, ctypes.c_size_t, _ERR]),
    "kh_conn_write": (ctypes.c_int, [_PTR, ctypes.c_char_p, ctypes.c_size_t, _ERR]),
    "kh_conn_key_update": (ctypes.c_int, [_PTR, ctypes.c_int, _ERR]),
    "kh_conn_close": (ctypes.c_int, [_PTR, _ERR]),
    "kh_conn_flush_tickets": (ctypes.c_int, [_PTR, _ERR]),
    "kh_conn_free": (None, [_PTR]),
    "kh_conn_pending": (ctypes.c_size_t, [_PTR]),
    "kh_conn_get_info": (None, [_PTR, ctypes.POINTER(_ConnInfo)]),
}


def load_library(path=None):
    """Load libkeyhold once: |path|, else $KEYHOLD_LIB, else the system's
    libkeyhold (find_library, then the SONAME libkeyhold.so.0)."""
    global _lib
    if _lib is not None and path is None:
        return _lib
    names = [path] if path else [os.environ.get("KEYHOLD_LIB"),
                                 ctypes.util.find_library("keyhold"), "libkeyhold.so.0"]
    errors = []  # the first name that loads wins
    for name in filter(None, names):
        try:
            lib = ctypes.CDLL(name)
            break
        except OSError as e:
            errors.append(str(e))
    else:
        raise OSError("cannot load libkeyhold: " + ("; ".join(errors) or "not found"))
    for fn, (res, args) in _SIGNATURES.items():
        f = getattr(lib, fn)
        f.restype, f.argtypes = res, args
    _lib = lib
    return lib


def _raise(err):
    raise KeyholdError(err.code, _s(_lib.kh_code_name(err.code)), _s(err.msg))


def _b(s):
    return None if s is None else (s.encode() if isinstance(s, str) else bytes(s))


def _s(v):
    return (v or b"").decode(errors="replace")


def _opts(identity, expect_peers, alpn, server_name, timeout_ms, access_token):
    expect_peers, alpn = [_b(x) for x in expect_peers], [_b(x) for x in alpn]
    if len(expect_peers) > MAX_PEERS or len(alpn) > MAX_PROTOCOLS:
        raise ValueError(f"at most {MAX_PEERS} expected peers and {MAX_PROTOCOLS} ALPN protocols")
    o = _HandshakeOpts()  # all zero: KH_HANDSHAKE_OPTS_INIT
    o.local_identity = _b(identity)
    o.expect_peers[:len(expect_peers)] = expect_peers
    o.expect_peer_count = len(expect_peers)
    o.alpn[:len(alpn)] = alpn
    o.alpn_count = len(alpn)
    o.server_name = _b(server_name)
    o.timeout_ms = int(timeout_ms)
    o.access_token = _b(access_token)
    return o  # ctypes keeps the bytes objects alive (o._objects)


class Client:
    """A channel to the keyholdd sidecar (kh_client); may be shared by threads.
    close() (or the end of a with block) frees it, and first its open Conns."""

    def __init__(self, sidecar_path, lib=None):
        self._lib = load_library(lib)
        self._conns = weakref.WeakSet()
        err = _Error()
        self._kc = self._lib.kh_client_new(os.fsencode(sidecar_path), ctypes.byref(err))
        if not self._kc:
            _raise(err)

    def _handshake(self, fn, sock_or_fd, kw):
        if self._kc is None:
            raise ValueError("Client is closed")
        if isinstance(sock_or_fd, int):
            fd, sock = sock_or_fd, None
        else:
            sock = sock_or_fd
            if getattr(sock, "gettimeout", lambda: None)() is not None:
                raise ValueError("the socket must be blocking (settimeout(None))")
            fd = sock.fileno()
        o, err = _opts(**kw), _Error()
        c = fn(self._kc, fd, ctypes.byref(o), ctypes.byref(err))
        if not c:
            _raise(err)
        conn = Conn(self, c, sock, fd)
        self._conns.add(conn)
        return conn

    def connect(self, sock_or_fd, identity=None, expect_peers=(), alpn=(), server_name=None,
                timeout_ms=0, access_token=None):
        """Client handshake over a connected blocking socket (or fd): a Conn."""
        return self._handshake(self._lib.kh_connect_fd, sock_or_fd, dict(
            identity=identity, expect_peers=expect_peers, alpn=alpn, server_name=server_name,
            timeout_ms=timeout_ms, access_token=access_token))

    def accept(self, sock_or_fd, identity=None, expect_peers=(), alpn=(), timeout_ms=0,
               access_token=None):
        """Server handshake over an accepted blocking socket (or fd): a Conn."""
        return self._handshake(self._lib.kh_accept_fd, sock_or_fd, dict(
            identity=identity, expect_peers=expect_peers, alpn=alpn, server_name=None,
            timeout_ms=timeout_ms, access_token=access_token))

    def close(self):
        if self._kc is not None:
            for conn in list(self._conns):
                conn._free()
            self._lib.kh_client_free(self._kc)
            self._kc = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        if getattr(self, "_kc", None) is not None:
            self.close()


class Conn:
    """An established TLS 1.3 connection (kh_conn). It keeps its socket object
    (so the fd stays open) and its Client alive; close() does not close the socket."""

    def __init__(self, client, handle, sock, fd):
        self._client, self._c, self.sock, self._fd = client, handle, sock, fd
        self._lib = client._lib

    def _handle(self):
        if self._c is None:
            raise ValueError("Conn is closed")
        return self._c

    def read(self, n=16384):
        """Up to n plaintext bytes; b'' once the peer sent close_notify."""
        buf, err = ctypes.create_string_buffer(max(int(n), 1)), _Error()
        r = self._lib.kh_conn_read(self._handle(), buf, len(buf), ctypes.byref(err))
        if r < 0:
            _raise(err)
        return buf.raw[:r]

    def _ok(self, fn, *args):  # an int-returning kh_conn_* call: 0 raises
        err = _Error()
        if not fn(self._handle(), *args, ctypes.byref(err)):
            _raise(err)

    def write(self, data):
        """Encrypt and send all of data."""
        data = bytes(data)
        self._ok(self._lib.kh_conn_write, data, len(data))

    def key_update(self, request_peer=False):
        """Send a KeyUpdate; request_peer: ask the peer to update too."""
        self._ok(self._lib.kh_conn_key_update, int(bool(request_peer)))

    def flush_tickets(self):
        """Hand the peer's session tickets back to the sidecar now."""
        self._ok(self._lib.kh_conn_flush_tickets)

    def shutdown(self):
        """Send close_notify (and hand tickets back); reading may go on."""
        self._ok(self._lib.kh_conn_close)

    @property
    def pending(self):
        return self._lib.kh_conn_pending(self._handle())

    @property
    def info(self):
        i = _ConnInfo()
        self._lib.kh_conn_get_info(self._handle(), ctypes.byref(i))
        return ConnInfo(_s(i.version), _s(i.ciphersuite), _s(i.alpn), _s(i.peer_identity),
                        _s(i.local_identity), bool(i.resumed), i.connection_id)

    def _free(self):
        if self._c is not None:
            self._lib.kh_conn_free(self._c)
            self._c = None

    def close(self):
        """Send close_notify if not sent yet (failures ignored), wipe and free
        the connection. The socket stays open: close it yourself."""
        if self._c is not None:
            self._lib.kh_conn_close(self._c, None)  # a failure: the peer is gone
            self._free()

    def fileno(self):
        return self._fd

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):  # fallback: free without talking to the peer
        if getattr(self, "_c", None) is not None:
            self._free()
