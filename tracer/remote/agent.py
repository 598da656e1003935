"""`swarmtrace agent`: this host's kernel, streamed in .swt frames to authenticated collectors.

Threads: the caller's thread reads the ring buffer and never waits for a network; an
acceptor authenticates collectors; each collector has one thread that owns its TLS socket
(sends its queue, answers clock pings). A collector's queue is bounded in bytes: when it is
full, new event batches for that collector are dropped and counted, and the count goes out
in the next status record.
"""

from __future__ import annotations

import contextlib
import json
import logging
import select
import socket
import ssl
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tracer.enrich.names import Names
from tracer.errors import RemoteError
from tracer.events import F_CT, port_to_raw
from tracer.probes import netns
from tracer.remote import auth, wire
from tracer.source import EventSource, Filter
from tracer.tracefile.format import RecordType, TraceHeader

log = logging.getLogger(__name__)

BUFFER_BYTES = 8 << 20  # per collector: ~100k events at the wire's compression
HANDSHAKE_TIMEOUT_S = 5.0
SEND_TIMEOUT_S = 10.0  # a collector that takes no bytes for this long is dropped
STATUS_INTERVAL_S = 0.2  # also the collector's merge watermark: keep it short
NAMES_INTERVAL_S = 1.0
SCOPE_RESCAN_S = 0.2


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


class _Collector:
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


class Agent:
    """Serves one source's events (and names) to every authenticated collector."""

    def __init__(self, opts: AgentOptions, source: EventSource, names: Names | None,
                 flt: Filter) -> None:
        self.opts = opts
        self.source = source
        self.names = names
        self.filter = flt
        self._ctx, self._cert_fp = auth.server_context()
        self._clients: list[_Collector] = []
        self._lock = threading.Lock()
        self._names_lock = threading.Lock()
        self._stop = threading.Event()
        self._listener = self._listen()
        self._allowed: set[int] = set()
        self._last_scope = 0.0
        self._own_port = port_to_raw(opts.port)
        self.events_sent = 0
        self.refused = 0
        self.not_ours = 0  # read, but of another node's netns or the agent's own stream
        self.unsent = 0  # read while no collector was connected
        self._read_mark = 0  # this agent's clock just before the latest ring-buffer read

    def clock(self) -> int:
        """This agent's clock: CLOCK_MONOTONIC, shifted by the test hook."""
        return time.monotonic_ns() + self.opts.clock_offset_ns

    def _listen(self) -> socket.socket:
        def make() -> socket.socket:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((self.opts.host, self.opts.port))
            s.listen(16)
            return s

        try:
            if self.opts.listen_netns is None:
                return make()
            # A socket belongs to the netns it was made in: the node's, where its address is.
            with netns.entered(self.opts.listen_netns):
                return make()
        except OSError as err:
            raise RemoteError(f"cannot listen on {self.opts.host}:{self.opts.port}: "
                              f"{err.strerror}; give the node's swarm address with --listen"
                              ) from err

    @property
    def address(self) -> tuple[str, int]:
        host, port = self._listener.getsockname()[:2]
        return str(host), int(port)

    def serve(self, until: Callable[[], bool] = lambda: False) -> None:
        """Stream until `until()` is true or stop() is called (Ctrl-C ends it too)."""
        acceptor = threading.Thread(target=self._accept, name="agent-accept", daemon=True)
        acceptor.start()
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
        with contextlib.suppress(OSError):
            # Shut down first: the acceptor's select() keeps a closed socket listening.
            self._listener.shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(OSError):
            self._listener.close()
        with self._lock:
            clients, self._clients = self._clients, []
        for c in clients:
            c.close()

    def _live(self) -> list[_Collector]:
        with self._lock:
            self._clients = [c for c in self._clients if not c.closed]
            return list(self._clients)

    def _send_events(self, arr: np.ndarray) -> None:
        keep = self._keep(arr)
        self.not_ours += int(len(arr) - keep.sum())
        arr = arr[keep]
        if not len(arr):
            return
        if self.opts.clock_offset_ns:
            arr["ts_ns"] += np.uint64(self.opts.clock_offset_ns % (1 << 64))
        clients = self._live()
        if not clients:
            self.unsent += len(arr)
            return
        data = wire.events_frame(arr)  # encoded once for every collector
        for c in clients:
            c.offer(data, len(arr))
        self.events_sent += len(arr)

    def _keep(self, arr: np.ndarray) -> np.ndarray:
        """This node's netns only, and not the agent's own stream."""
        p = self._own_port
        ct = (arr["flags"] & F_CT) != 0
        mine = (arr["pkt"]["sport"] == p) | (arr["pkt"]["dport"] == p) | \
            (ct & ((arr["orig"]["sport"] == p) | (arr["orig"]["dport"] == p)))
        keep: np.ndarray = ~mine
        scope = self.opts.scope
        if scope is None:
            return keep
        if not self._allowed or (time.monotonic() - self._last_scope >= SCOPE_RESCAN_S and
                                 not np.isin(arr["netns"], list(self._allowed)).all()):
            self._allowed = set(netns.discover(scope=scope))
            self._last_scope = time.monotonic()
        ours: np.ndarray = np.isin(arr["netns"], np.fromiter(self._allowed, dtype=np.uint32))
        if not ours.all():
            log.debug("not this node's netns: %s (this node's: %s)",
                      sorted(set(arr["netns"][~ours].tolist())), sorted(self._allowed))
        out: np.ndarray = keep & ours
        return out

    def _send_status(self) -> None:
        lost = self.source.stats().lost
        for c in self._live():
            c.offer(wire.json_frame(wire.WireType.STATUS, {
                "now": self._read_mark, "events": self.events_sent, "lost": lost,
                "dropped": c.dropped_events}))

    def _send_names(self) -> None:
        with self._names_lock:  # the serving loop, and a handshake for its new collector
            self._send_names_locked()

    def _send_names_locked(self) -> None:
        if self.names is None:
            return
        clients = self._live()
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

    # -- collectors --------------------------------------------------------------------

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                ready = select.select([self._listener], [], [], 0.3)[0]
                if not ready:
                    continue
                conn, peer = self._listener.accept()
            except (OSError, ValueError):
                return  # the listener was closed: stopping
            threading.Thread(target=self._handshake, args=(conn, f"{peer[0]}:{peer[1]}"),
                             name="agent-handshake", daemon=True).start()

    def _handshake(self, conn: socket.socket, peer: str) -> None:
        """TLS, then the collector proves it holds the token before it gets anything."""
        try:
            conn.settimeout(HANDSHAKE_TIMEOUT_S)
            tls = self._ctx.wrap_socket(conn, server_side=True)
            nonce = auth.new_nonce()
            tls.sendall(wire.json_frame(wire.WireType.HELLO, {"nonce": nonce.hex()}))
            msg = wire.read_json(tls, wire.WireType.AUTH)
            theirs = bytes.fromhex(str(msg["nonce"]))
            want = auth.proof(self.opts.token, auth.ROLE_COLLECTOR, nonce, theirs,
                              self._cert_fp)
            if not auth.check(want, bytes.fromhex(str(msg["proof"]))):
                self.refused += 1
                log.warning("refused collector %s: wrong token", peer)
                tls.close()
                return
            mine = auth.proof(self.opts.token, auth.ROLE_AGENT, nonce, theirs, self._cert_fp)
            tls.sendall(wire.json_frame(wire.WireType.AUTH, {"proof": mine.hex()}))
            tls.sendall(wire.json_frame(RecordType.HEADER, self._header()))
        except (OSError, ssl.SSLError, RemoteError, ValueError, KeyError) as err:
            self.refused += 1
            log.warning("refused collector %s: %s", peer, err)
            conn.close()
            return
        client = _Collector(tls, peer, self.opts.buffer_bytes, self.clock)
        with self._lock:
            if self._stop.is_set():
                client.close()
                return
            self._clients.append(client)
        self._send_names()  # names first: the events that follow are named on arrival
        client.start()
        log.info("collector %s connected", peer)

    def _header(self) -> dict[str, object]:
        h = TraceHeader.now(self.source.info, self.filter, nodes=(self.opts.node,))
        d = h.to_json()
        d["start_mono_ns"] = int(d["start_mono_ns"]) + self.opts.clock_offset_ns
        d["hostname"] = self.opts.node
        return d

