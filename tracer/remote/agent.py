"""`swarmtrace agent`: this host's kernel, streamed in .swt frames to authenticated collectors.

Threads: the caller's thread reads the ring buffer and never waits for a network; an
acceptor authenticates collectors; each collector has one thread that owns its TLS socket
(sends its queue, answers clock pings). A collector's queue is bounded in bytes: when it is
full, new event batches for that collector are dropped and counted, and the count goes out
in the next status record.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tracer.enrich.names import Names
from tracer.probes import netns
from tracer.remote import wire
from tracer.remote.agent_listener import AgentListener
from tracer.remote.served_events import ServedEvents
from tracer.source import EventSource, Filter
from tracer.tracefile.format import RecordType, TraceHeader

BUFFER_BYTES = 8 << 20  # per collector: ~100k events at the wire's compression
STATUS_INTERVAL_S = 0.2  # also the collector's merge watermark: keep it short
NAMES_INTERVAL_S = 1.0


@dataclass(frozen=True)
class AgentOptions:
    host: str  # the address to listen on (the node's swarm address)
    port: int
    token: bytes
    node: str
    listen_netns: Path | None = None  # make the listening socket in this netns (the node's)
    scope: netns.NetnsScope | None = None  # only this node's netns (a shared kernel)
    buffer_bytes: int = BUFFER_BYTES
    # TEST HOOK: added to every time this agent reports (events, names, status, pongs), so a
    # test on one kernel can show that the collector's clock alignment recovers it.
    clock_offset_ns: int = 0


class Agent:
    """Serves one source's events (and names) to every authenticated collector."""

    def __init__(self, opts: AgentOptions, source: EventSource, names: Names | None,
                 flt: Filter) -> None:
        self.opts = opts
        self.source = source
        self.names = names
        self.filter = flt
        self._names_lock = threading.Lock()
        self._stop = threading.Event()
        # Names first, before a new collector's events: they are named on arrival.
        self._listener = AgentListener((opts.host, opts.port), opts.listen_netns, opts.token,
                                       opts.buffer_bytes, self.clock, self._header,
                                       welcome=self._send_names)
        self._served = ServedEvents(opts.port, opts.scope)
        self.events_sent = 0
        self.not_ours = 0  # read, but of another node's netns or the agent's own stream
        self.unsent = 0  # read while no collector was connected
        self._read_mark = 0  # this agent's clock just before the latest ring-buffer read

    def clock(self) -> int:
        """This agent's clock: CLOCK_MONOTONIC, shifted by the test hook."""
        return time.monotonic_ns() + self.opts.clock_offset_ns

    @property
    def address(self) -> tuple[str, int]:
        return self._listener.address

    @property
    def refused(self) -> int:
        """Collectors that failed the handshake."""
        return self._listener.refused

    def serve(self, until: Callable[[], bool] = lambda: False) -> None:
        """Stream until `until()` is true or stop() is called (Ctrl-C ends it too)."""
        acceptor = self._listener.accept_in_thread()
        next_status = next_names = 0.0
        try:
            while not self._stop.is_set() and not until():
                # Taken before reading: everything stamped earlier is in this read, so the
                # collector may release up to here (an event in flight is microseconds old).
                self._read_mark = self.clock()
                arr = self.source.poll(0.1)
                if len(arr):
                    self._send_events(arr)
                now = time.monotonic()
                if now >= next_names:
                    next_names = now + NAMES_INTERVAL_S
                    self._send_names()
                if now >= next_status:
                    next_status = now + STATUS_INTERVAL_S
                    self._send_status()
        finally:
            self.stop()
            acceptor.join(timeout=2)

    def stop(self) -> None:
        self._stop.set()
        self._listener.close()

    def _send_events(self, arr: np.ndarray) -> None:
        keep = self._served.keep(arr)
        self.not_ours += int(len(arr) - keep.sum())
        arr = arr[keep]
        if not len(arr):
            return
        if self.opts.clock_offset_ns:
            arr["ts_ns"] += np.uint64(self.opts.clock_offset_ns % (1 << 64))
        clients = self._listener.live()
        if not clients:
            self.unsent += len(arr)
            return
        data = wire.events_frame(arr)  # encoded once for every collector
        for c in clients:
            c.offer(data, len(arr))
        self.events_sent += len(arr)

    def _send_status(self) -> None:
        lost = self.source.stats().lost
        for c in self._listener.live():
            c.offer(wire.json_frame(wire.WireType.STATUS, {
                "now": self._read_mark, "events": self.events_sent, "lost": lost,
                "dropped": c.dropped_events}))

    def _send_names(self) -> None:
        with self._names_lock:  # the serving loop, and a handshake for its new collector
            self._send_names_locked()

    def _send_names_locked(self) -> None:
        if self.names is None:
            return
        clients = self._listener.live()
        if not clients:
            return
        for c in clients:
            # A new collector gets the whole log kept, then only what is new.
            first = c.names_sent is None
            snap = self.names.snapshot() if c.names_sent is None \
                else self.names.changes_since(c.names_sent)
            new = snap.get("changes") or []
            c.names_sent = int(snap["count"])
            if not first and not new:
                continue
            shifted = [{**ch, "t": int(ch["t"]) + self.opts.clock_offset_ns} for ch in new]
            body = {"ts_ns": self.clock(), "kind": "snapshot" if first else "change",
                    "data": {**snap, "changes": shifted}}
            c.offer(wire.json_frame(RecordType.TOPOLOGY, body))

    def _header(self) -> dict[str, object]:
        h = TraceHeader.now(self.source.info, self.filter, nodes=(self.opts.node,))
        d = h.to_json()
        d["start_mono_ns"] = int(d["start_mono_ns"]) + self.opts.clock_offset_ns
        d["hostname"] = self.opts.node
        return d

