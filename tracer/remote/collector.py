"""Every node's agent merged into one EventSource: clocks aligned, netns kept apart, missing
nodes named, agents reconnected.

Each agent's events arrive in its own clock with its own kernel's netns inodes. The
collector moves them onto its own CLOCK_MONOTONIC timeline (clocks.py) and into a netns
number space per node, so the correlator, the names and the sinks work unchanged. Events
are released in time order once every connected agent has reported a later time (a
watermark from its status records), or after MAX_HOLD_S whatever the others say.
"""

from __future__ import annotations

import json
import logging
import select
import socket
import ssl
import threading
import time
from collections import deque
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self

import numpy as np

from tracer.enrich.history import KEEP_CLOSED_NS, NameHistory, RecordedNames
from tracer.errors import RemoteError
from tracer.events import EVENT_DTYPE
from tracer.remote import auth, wire
from tracer.remote.clocks import ClockAligner, Offset
from tracer.source import SourceInfo, SourceStats
from tracer.tracefile.format import RecordType

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 3.0
READY_WAIT_S = 5.0  # at start, how long to wait for every agent before going on without
RECONNECT_S = 1.0
PING_INTERVAL_S = 1.0
START_PINGS = 5
SILENT_S = 5.0  # an agent sends status 5 times a second: this long without a record = gone
MAX_HOLD_S = 1.0
# Remote netns inodes: Linux numbers netns from 0xF0000000 up; the low 20 bits (a million
# namespaces) keep the inode, the next 8 bits say which node (up to 255 agents).
NETNS_BASE = 0xF0000000
NETNS_LOW = 0xFFFFF
MAX_AGENTS = 255
REMOTE_VIEW_RANK = 10


def node_netns(index: int, inode: int) -> int:
    """The collector's number for netns `inode` of the agent at `index` (1-based)."""
    return 0 if inode == 0 else NETNS_BASE | (index << 20) | (inode & NETNS_LOW)


@dataclass(frozen=True)
class AgentAddr:
    host: str
    port: int
    node: str = ""  # the node's name, when the manager's node list gave it

    @property
    def label(self) -> str:
        return self.node or f"{self.host}:{self.port}"


def parse_agents(text: str, default_port: int = wire.DEFAULT_PORT) -> list[AgentAddr]:
    """`host[:port],...` from --agents; RemoteError with the bad item otherwise."""
    out = []
    for item in filter(None, (s.strip() for s in text.split(","))):
        host, _, port = item.rpartition(":") if ":" in item else (item, "", "")
        try:
            out.append(AgentAddr(host, int(port) if port else default_port))
        except ValueError as err:
            raise RemoteError(f"--agents: {item!r} is not host:port") from err
    if not out:
        raise RemoteError("--agents needs at least one host:port")
    return out


class _Link:
    """One agent: a thread that connects, authenticates, reads, pings and reconnects."""

    def __init__(self, index: int, addr: AgentAddr, token: bytes, owner: Collector) -> None:
        self.index, self.addr, self._token, self._owner = index, addr, token, owner
        self.node = addr.label
        self.connected = False
        self.header: dict[str, Any] = {}
        self.agent_now = 0  # the agent's clock, from its latest status
        self.dropped = 0  # events the agent could not queue for us (we were too slow)
        self._told_dropped = 0
        self.lost = 0  # events the agent's kernel could not put in its ring buffer
        self.events = 0  # events received from it
        self.ever_connected = False
        self._thread = threading.Thread(target=self._run, name=f"collector {addr.label}",
                                        daemon=True)

    def start(self) -> None:
        self._thread.start()

    def join(self) -> None:
        self._thread.join(timeout=5)

    def _run(self) -> None:
        stop = self._owner.stopping
        last_error = ""
        while not stop.is_set():
            try:
                self._session()
                last_error = ""
            except (OSError, ssl.SSLError, RemoteError, ValueError, KeyError) as err:
                text = str(err) or type(err).__name__
                if text != last_error:  # one line per kind of failure, not one per retry
                    log.info("agent %s: %s", self.addr.label, text)
                last_error = text
            # The next session is a new agent process: its clock reading and counters restart.
            self.agent_now = self._told_dropped = 0
            if self.connected:
                self.connected = False
                self._owner.notice(f"{self.node}: no agent, its hops are missing "
                                   f"(agent at {self.addr.host}:{self.addr.port} dropped out)")
            stop.wait(RECONNECT_S)

    def _session(self) -> None:
        raw = socket.create_connection((self.addr.host, self.addr.port), CONNECT_TIMEOUT_S)
        with self._owner.tls.wrap_socket(raw) as tls:
            tls.settimeout(SILENT_S)
            fp = auth.peer_fingerprint(tls)
            hello = wire.read_json(tls, wire.WireType.HELLO)
            agent_nonce, nonce = bytes.fromhex(str(hello["nonce"])), auth.new_nonce()
            tls.sendall(wire.json_frame(wire.WireType.AUTH, {
                "nonce": nonce.hex(),
                "proof": auth.proof(self._token, auth.ROLE_COLLECTOR, agent_nonce, nonce,
                                    fp).hex()}))
            try:
                answer = wire.read_json(tls, wire.WireType.AUTH)
            except ConnectionError as err:
                raise RemoteError(f"the agent at {self.addr.host}:{self.addr.port} refused "
                                  "our token: is it the deployment's?") from err
            want = auth.proof(self._token, auth.ROLE_AGENT, agent_nonce, nonce, fp)
            if not auth.check(want, bytes.fromhex(str(answer["proof"]))):
                raise RemoteError(f"{self.addr.host}:{self.addr.port} could not prove it holds "
                                  "the token: not our agent")
            self.header = wire.read_json(tls, RecordType.HEADER)
            nodes = self.header.get("nodes") or [self.addr.label]
            self.node = self.addr.node or str(nodes[0])
            stash: list[tuple[int, bytes]] = []
            for _ in range(START_PINGS):  # the clock first: events need it to be placed
                self._ping(tls, stash)
            self.connected = self.ever_connected = True
            self._owner.notice(f"{self.node}: agent connected ({self.addr.host}:"
                               f"{self.addr.port}, kernel {self.header.get('kernel', '?')})")
            for kind, payload in stash:
                self._handle(kind, payload)
            next_ping = time.monotonic() + PING_INTERVAL_S
            heard = time.monotonic()
            while not self._owner.stopping.is_set():
                if tls.pending() or select.select([tls], [], [], 0.2)[0]:
                    self._handle(*wire.read_frame(tls))
                    heard = time.monotonic()
                elif time.monotonic() - heard > SILENT_S:
                    # A host that died or a partition sends no FIN: its silence is the sign.
                    raise RemoteError(f"the agent sent nothing for {SILENT_S:.0f} s")
                if time.monotonic() >= next_ping:
                    next_ping = time.monotonic() + PING_INTERVAL_S
                    tls.sendall(wire.json_frame(wire.WireType.PING,
                                                {"t1": time.monotonic_ns()}))

    def _ping(self, tls: ssl.SSLSocket, stash: list[tuple[int, bytes]]) -> None:
        t1 = time.monotonic_ns()
        tls.sendall(wire.json_frame(wire.WireType.PING, {"t1": t1}))
        while True:
            kind, payload = wire.read_frame(tls)
            if kind == wire.WireType.PONG:
                self._handle(kind, payload)
                return
            stash.append((kind, payload))

    def _handle(self, kind: int, payload: bytes) -> None:
        if kind == RecordType.EVENTS:
            self._owner.arrive(self, wire.events_of(payload))
        elif kind == wire.WireType.PONG:
            d = json.loads(payload)
            self._owner.clocks.ping(self.index, int(d["t1"]), int(d["t2"]), time.monotonic_ns())
        elif kind == wire.WireType.STATUS:
            d = json.loads(payload)
            self.agent_now = int(d["now"])
            self.dropped, self.lost = int(d["dropped"]), int(d["lost"])
            if self.dropped > self._told_dropped:
                log.warning("%s: the agent dropped %d events for this collector (it was too "
                            "slow to take them)", self.node, self.dropped)
                self._told_dropped = self.dropped
        elif kind == RecordType.TOPOLOGY:
            self._owner.names_arrive(self, json.loads(payload))


class Collector:
    """An EventSource over every node's agent (see the module docstring)."""

    def __init__(self, agents: list[AgentAddr], token: bytes,
                 ready_wait_s: float = READY_WAIT_S) -> None:
        if len(agents) > MAX_AGENTS:
            raise RemoteError(f"one collector follows at most {MAX_AGENTS} agents")
        self.tls = auth.client_context()
        self.stopping = threading.Event()
        self.clocks = ClockAligner()
        self.names = RecordedNames(NameHistory(KEEP_CLOSED_NS))  # bounded: runs for days
        self._links = [_Link(i + 1, a, token, self) for i, a in enumerate(agents)]
        self._ready_wait_s = ready_wait_s
        self._inbox: deque[tuple[_Link, np.ndarray]] = deque()
        self._arrived = threading.Event()
        self._pending: list[tuple[_Link, np.ndarray]] = []  # raw times, netns renumbered
        self._notices: deque[str] = deque(maxlen=1000)
        self._events = 0
        self.info = self._describe()

    # -- EventSource ---------------------------------------------------------------------

    def _describe(self) -> SourceInfo:
        headers = [lk.header for lk in self._links if lk.header]
        kernels = sorted({str(h.get("kernel", "?")) for h in headers})
        notes = [f"{lk.node}: no agent, its hops are missing"
                 for lk in self._links if not lk.connected]
        reasons = tuple(str(r) for r in headers[0].get("drop_reasons", ())) if headers else ()
        return SourceInfo(backend="agents", kernel=", ".join(kernels) or "?", live=True,
                          notes=tuple(notes), drop_reasons=reasons)

    def __enter__(self) -> Self:
        for lk in self._links:
            lk.start()
        deadline = time.monotonic() + self._ready_wait_s
        while time.monotonic() < deadline and not all(lk.connected for lk in self._links):
            self.stopping.wait(0.05)
        self.info = self._describe()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        self.stopping.set()
        for lk in self._links:
            lk.join()

    @property
    def finished(self) -> bool:
        return False

    def poll(self, timeout_s: float) -> np.ndarray:
        if not self._inbox:
            self._arrived.wait(timeout_s)
        self._arrived.clear()
        while self._inbox:
            link, arr = self._inbox.popleft()
            self._place(link, arr)
        return self._release()

    def stats(self) -> SourceStats:
        return SourceStats(events=self._events, lost=self.lost(),
                           extra={f"{lk.node} dropped": lk.dropped for lk in self._links})

    def lost(self) -> int:
        return sum(lk.lost + lk.dropped for lk in self._links)

    # -- AgentSource ---------------------------------------------------------------------

    def agents(self) -> dict[str, bool]:
        return {lk.node: lk.connected for lk in self._links}

    def take_notices(self) -> list[str]:
        """Nodes that lost or regained their agent since the last call, in order."""
        out = []
        while self._notices:
            out.append(self._notices.popleft())
        return out

    def offsets(self) -> list[tuple[str, Offset]]:
        order = [lk.index for lk in self._links]
        out = []
        for lk in self._links:
            off = self.clocks.offset(lk.index, order)
            if off is not None:
                out.append((lk.node, off))
        return out

    def agent_lines(self) -> list[str]:
        """Per node: events received, and what its kernel or its queue for us lost."""
        return [f"{lk.node}: {lk.events} events from its agent, {lk.lost} lost in its kernel, "
                f"{lk.dropped} dropped by its queue for this collector" for lk in self._links]

    def clock_lines(self) -> list[str]:
        """Each node's clock as estimated, with its error, for people."""
        names = {lk.index: lk.node for lk in self._links}
        how = {"vxlan": "VXLAN packets both ways", "ping": "pings",
               "ping+vxlan": "pings, kept causal by VXLAN packets one way"}
        lines = []
        for node, off in self.offsets():
            value, vs = off.offset_ns, "this host"
            if off.reference:
                value, vs = off.relative_ns, names.get(off.reference, "?")
            lines.append(f"{node}: clock {value / 1e6:+.3f} ms vs {vs}, +- "
                         f"{off.error_ns / 1e3:.1f} us ({how[off.source]}, {off.samples} "
                         "samples)")
        return lines

    # -- from the link threads -------------------------------------------------------------

    def notice(self, text: str) -> None:
        log.info("%s", text)
        self._notices.append(text)
        self.info = self._describe()

    def arrive(self, link: _Link, arr: np.ndarray) -> None:
        self._inbox.append((link, arr))
        self._arrived.set()

    def names_arrive(self, link: _Link, body: dict[str, Any]) -> None:
        off = self._offset(link)
        for change in (body.get("data") or {}).get("changes") or ():
            c = dict(change)
            c["t"] = max(0, int(c["t"]) - off)  # known since before this clock began
            c["src"] = f"{link.node}/{c['src']}"
            value = c.get("value")
            if c["kind"] == "addrs" and isinstance(value, dict) and value.get("node") \
                    and value["node"] != link.node:
                # What one node's Docker says of another node's task ranks below that
                # node's own word (it may name the node by address only).
                c["rank"] = int(c["rank"]) + REMOTE_VIEW_RANK
            if c["kind"] == "netns":
                c["key"] = node_netns(link.index, int(c["key"]))
            elif c["kind"] == "fwmarks":
                c["key"] = [node_netns(link.index, int(c["key"][0])), c["key"][1]]
            self.names.history.apply(c)

    # -- merging -------------------------------------------------------------------------

    def _offset(self, link: _Link) -> int:
        off = self.clocks.offset(link.index, [lk.index for lk in self._links])
        return off.offset_ns if off is not None else 0

    def _place(self, link: _Link, arr: np.ndarray) -> None:
        """Renumber the netns now; the clock is applied at release, when both ends of the
        VXLAN packets seen meanwhile have tightened it."""
        link.events += len(arr)
        self.clocks.vxlan(link.index, arr)
        arr = arr.copy()
        ns = arr["netns"].astype(np.uint64)
        remote = (np.uint64(NETNS_BASE) | np.uint64(link.index << 20) |
                  (ns & np.uint64(NETNS_LOW)))
        arr["netns"] = np.where(ns == 0, ns, remote).astype(np.uint32)
        self._pending.append((link, arr))

    def _release(self) -> np.ndarray:
        if not self._pending:
            return np.empty(0, dtype=EVENT_DTYPE)
        offsets = {lk.index: self._offset(lk) for lk in self._links}
        parts = []
        for link, raw in self._pending:
            arr = raw.copy()
            ts = arr["ts_ns"].astype(np.int64) - np.int64(offsets[link.index])
            arr["ts_ns"] = ts.astype(np.uint64)
            parts.append((link, raw, arr))
        merged = np.concatenate([a for _, _, a in parts])
        live = [lk for lk in self._links if lk.connected and lk.agent_now]
        now = time.monotonic_ns()
        mark = min((lk.agent_now - offsets[lk.index] for lk in live), default=now)
        cut = np.uint64(max(mark, now - int(MAX_HOLD_S * 1e9), 0))
        out = merged[merged["ts_ns"] <= cut]
        out = out[np.argsort(out["ts_ns"], kind="stable")]
        self._pending = [(link, raw[arr["ts_ns"] > cut]) for link, raw, arr in parts
                         if (arr["ts_ns"] > cut).any()]
        self._events += len(out)
        return out
