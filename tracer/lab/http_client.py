"""The lab's HTTP client; runs inside a client netns (`python -m tracer.lab.http_client`).

`requests` prints one JSON object per request (each a new TCP connection); `flood` prints one
JSON object with the number of requests completed in a bounded time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import sys
import time

from tracer.lab.http_backend import BODY_PREFIX

TIMEOUT_S = 3.0


def _request_bytes(target: str) -> bytes:
    return f"GET / HTTP/1.0\r\nHost: {target}\r\nUser-Agent: swarmtrace-lab\r\n\r\n".encode()


def _split(target: str) -> tuple[str, int]:
    host, _, port = target.rpartition(":")
    return host, int(port)


def parse_reply(raw: bytes) -> tuple[str, str, str]:
    """(body, backend name, error) of one HTTP reply; error is "" for a 200 with a backend name."""
    head, sep, rest = raw.partition(b"\r\n\r\n")
    if not sep:
        return "", "", f"incomplete reply ({len(raw)} bytes)"
    status = head.split(b"\r\n", 1)[0].decode(errors="replace")
    body = rest.decode(errors="replace").strip()
    if status.split(" ")[1:2] != ["200"]:
        return body, "", f"HTTP status: {status}"
    if not body.startswith(BODY_PREFIX):
        return body, "", "unexpected body"
    return body, body.removeprefix(BODY_PREFIX), ""


def one_request(target: str) -> dict[str, object]:
    """One request on a new connection; never raises for network errors."""
    addr = _split(target)
    deadline = time.monotonic() + TIMEOUT_S
    client = ""
    raw = b""
    error = ""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.settimeout(TIMEOUT_S)
            sock.connect(addr)
            host, port = sock.getsockname()
            client = f"{host}:{port}"
            sock.sendall(_request_bytes(target))
            while chunk := sock.recv(4096):
                raw += chunk
                sock.settimeout(max(deadline - time.monotonic(), 0.001))
        except OSError as err:
            error = f"{type(err).__name__}: {err}" if str(err) else type(err).__name__
        if not client:
            # A failed connect still bound a local port: report it, it is in the trace too.
            host, port = sock.getsockname()
            client = f"{host}:{port}"
    body, backend = "", ""
    if not error:
        body, backend, error = parse_reply(raw)
    return {
        "client": client,
        "target": target,
        "backend": backend,
        "body": body,
        "ok": not error,
        "error": error,
    }


def run_requests(target: str, count: int, interval_s: float) -> None:
    for i in range(count):
        if i and interval_s > 0:
            time.sleep(interval_s)
        print(json.dumps(one_request(target)), flush=True)


async def _flood(target: str, seconds: float, conns: int, rate: float = 0.0) -> dict[str, float]:
    """As fast as `conns` connections go, or (rate > 0) paced to `rate` requests/s in all."""
    host, port = _split(target)
    request = _request_bytes(target)
    done = errors = 0
    start = time.monotonic()
    deadline = start + seconds
    slot = 0  # the next request's place in the paced schedule

    async def one() -> bool:
        reader, writer = await asyncio.open_connection(host, port)
        try:
            writer.write(request)
            raw = await reader.read()
        finally:
            writer.close()
        return not parse_reply(raw)[2]

    async def worker() -> None:
        nonlocal done, errors
        nonlocal slot
        while time.monotonic() < deadline:
            if rate > 0:
                due, slot = start + slot / rate, slot + 1
                if due >= deadline:
                    break
                await asyncio.sleep(max(due - time.monotonic(), 0.0))
            try:
                ok = await asyncio.wait_for(one(), TIMEOUT_S)
            except (OSError, TimeoutError):
                ok = False
            if ok:
                done += 1
            else:
                errors += 1

    await asyncio.gather(*(worker() for _ in range(conns)))
    return {"completed": done, "errors": errors, "elapsed_s": time.monotonic() - start}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    sub = parser.add_subparsers(dest="mode", required=True)
    req = sub.add_parser("requests")
    req.add_argument("--target", required=True, help="ip:port")
    req.add_argument("--count", type=int, required=True)
    req.add_argument("--interval", type=float, default=0.0)
    flood = sub.add_parser("flood")
    flood.add_argument("--target", required=True, help="ip:port")
    flood.add_argument("--seconds", type=float, required=True)
    flood.add_argument("--conns", type=int, required=True)
    flood.add_argument("--rate", type=float, default=0.0, help="requests/s in all (0: flood)")
    args = parser.parse_args()
    if args.mode == "requests":
        run_requests(args.target, args.count, args.interval)
    else:
        result = asyncio.run(_flood(args.target, args.seconds, args.conns, args.rate))
        json.dump(result, sys.stdout)


if __name__ == "__main__":
    main()
