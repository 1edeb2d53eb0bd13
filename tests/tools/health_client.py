#!/usr/bin/python3
"""health_client.py SOCKET check|watch [SERVICE] [N]: an independent
grpc.health.v1 client (Debian's python3-grpcio, protobuf encoded by hand:
HealthCheckRequest{service=1}, HealthCheckResponse{status=1}).

check: prints the status name, or the gRPC error code and details.
watch: prints each status as it arrives, one per line, until N arrived
(default 1), then cancels the stream."""
import sys

import grpc

NAMES = {0: "UNKNOWN", 1: "SERVING", 2: "NOT_SERVING", 3: "SERVICE_UNKNOWN"}


def request(service):
    raw = service.encode()
    if not raw:
        return b""
    assert len(raw) < 128
    return b"\x0a" + bytes([len(raw)]) + raw


def status(resp):
    if resp == b"":
        return "UNKNOWN"  # all defaults: status 0
    assert resp[0] == 0x08 and len(resp) == 2, resp
    return NAMES.get(resp[1], str(resp[1]))


def main():
    sock, mode = sys.argv[1], sys.argv[2]
    service = sys.argv[3] if len(sys.argv) > 3 else ""
    want = int(sys.argv[4]) if len(sys.argv) > 4 else 1
    with grpc.insecure_channel("unix:" + sock) as ch:
        try:
            if mode == "check":
                call = ch.unary_unary("/grpc.health.v1.Health/Check")
                print(status(call(request(service), timeout=5)), flush=True)
                return 0
            stream = ch.unary_stream("/grpc.health.v1.Health/Watch")(request(service), timeout=30)
            for i, resp in enumerate(stream):
                print(status(resp), flush=True)
                if i + 1 == want:
                    stream.cancel()
                    return 0
            return 1
        except grpc.RpcError as e:
            print(e.code().name, e.details(), flush=True)
            return 1


if __name__ == "__main__":
    sys.exit(main())
