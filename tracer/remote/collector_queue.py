"""One collector connected to an agent: a queue bounded in bytes and the thread that sends it."""

from __future__ import annotations

import contextlib
import json
import logging
import select
import ssl
import threading
from collections import deque
from collections.abc import Callable

from tracer.errors import RemoteError
from tracer.remote import wire

log = logging.getLogger(__name__)

SEND_TIMEOUT_S = 10.0  # a collector that takes no bytes for this long is dropped


class CollectorQueue:
    """One authenticated collector: its bounded queue and the thread that owns its socket."""

    def __init__(self, sock: ssl.SSLSocket, peer: str, limit: int,
                 clock: Callable[[], int]) -> None:
        self.sock, self.peer, self._limit, self._clock = sock, peer, limit, clock
        self._queue: deque[bytes] = deque()
        self._bytes = 0
        self._cond = threading.Condition()
        self.closed = False
        self.dropped_events = 0
        self.names_sent: int | None = None  # the names log's count when last sent
        self._thread = threading.Thread(target=self._run, name=f"agent-client {peer}",
                                        daemon=True)

    def start(self) -> None:
        self._thread.start()

    def offer(self, data: bytes, events: int = 0) -> None:
        """Queue a record; an event batch that does not fit is dropped and counted."""
        with self._cond:
            if self.closed:
                return
            if events and self._bytes + len(data) > self._limit:
                self.dropped_events += events
                return
            self._queue.append(data)
            self._bytes += len(data)
            self._cond.notify()

    def _run(self) -> None:
        try:
            self.sock.settimeout(SEND_TIMEOUT_S)
            while not self.closed:
                with self._cond:
                    if not self._queue:
                        self._cond.wait(0.05)
                    batch = list(self._queue)
                    self._queue.clear()
                    self._bytes = 0
                if batch:
                    self.sock.sendall(b"".join(batch))
                self._answer_pings()
        except (OSError, RemoteError, ValueError) as err:
            if not self.closed:
                log.warning("collector %s gone: %s", self.peer, err)
        finally:
            self.close()

    def _answer_pings(self) -> None:
        # This thread owns the TLS socket: an SSL object is not shared between threads.
        while self.sock.pending() or select.select([self.sock], [], [], 0)[0]:
            kind, raw = wire.read_frame(self.sock)
            if kind != wire.WireType.PING:
                raise RemoteError(f"collector sent an unexpected record (type {kind})")
            t1 = json.loads(raw)["t1"]
            self.sock.sendall(wire.json_frame(wire.WireType.PONG, {"t1": t1, "t2": self._clock()}))

    def close(self) -> None:
        with self._cond:
            self.closed = True
            self._cond.notify()
        with contextlib.suppress(OSError):
            self.sock.close()
