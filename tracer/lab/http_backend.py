"""A backend task's HTTP server; runs inside its netns (`python -m tracer.lab.http_backend`).

Answers every request with `Processed by container ID <name>` (like the article's demo
service), so a user can check each traced request against the backend that answered it.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
from pathlib import Path

BODY_PREFIX = "Processed by container ID "


def response(name: str) -> bytes:
    body = f"{BODY_PREFIX}{name}\n".encode()
    head = (
        "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    return head.encode() + body


class _Answer(asyncio.Protocol):
    """Answers once the request head is in, then closes first (TIME_WAIT stays here)."""

    def __init__(self, reply: bytes) -> None:
        self.reply = reply
        self.head = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.head += data
        if b"\r\n\r\n" in self.head and self.transport is not None:
            self.transport.write(self.reply)
            self.transport.close()
            self.transport = None


async def serve(name: str, port: int, pidfile: Path) -> None:
    loop = asyncio.get_running_loop()
    reply = response(name)
    server = await loop.create_server(
        lambda: _Answer(reply), host="0.0.0.0", port=port, backlog=1024, reuse_address=True
    )
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    # Written only once listening: the lab waits for this file to know the task is ready.
    tmp = pidfile.with_suffix(".tmp")
    tmp.write_text(f"{os.getpid()}\n")
    tmp.replace(pidfile)
    async with server:
        await stop.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--name", required=True, help="name to answer with, e.g. backend-1")
    parser.add_argument("--port", type=int, default=80)
    parser.add_argument("--pidfile", type=Path, required=True)
    args = parser.parse_args()
    asyncio.run(serve(args.name, args.port, args.pidfile))


if __name__ == "__main__":
    main()
