"""Names over time: every Topology reading becomes spans [since, until) per key, and a log.

The log of changes (CLOCK_MONOTONIC ns, like the events) is the snapshot written into trace
files; replay rebuilds the very same spans from it, so it resolves names as live did.
"""

from __future__ import annotations

import threading
from bisect import bisect_left
from collections.abc import Hashable
from dataclasses import dataclass, fields
from operator import itemgetter
from typing import Any, cast

from tracer.enrich.names import AddrName, Names, NetnsName
from tracer.enrich.topology import Topology
from tracer.errors import TraceFileError

SNAPSHOT_VERSION = 1
KINDS = tuple(f.name for f in fields(Topology))  # netns, addrs, fwmarks, lb_index, ports, vnis

# When several readings know a key at the same time: Docker's API first, then the netns files
# of a known Docker node, then the bare netns directories.
RANK_DOCKER = 0
RANK_NODE_NETNS = 1
RANK_NETNS = 2

# A live history forgets what ended this long before its newest change: no event still being
# joined or named can be that old (the collector holds events for at most a second, a request
# ends after 3 s without one), so an agent or collector that runs for days keeps a bounded
# history. Replayed histories keep everything: a file's events come after its whole log.
KEEP_CLOSED_NS = 600 * 10**9

@dataclass(slots=True)
class _Span:
    since: int
    until: int | None
    rank: int
    value: Any
    opened: int  # sequence numbers of the log entries that opened and closed it
    closed: int | None = None

    def distance(self, ts: int) -> int:
        if ts < self.since:
            return self.since - ts
        if self.until is not None and ts >= self.until:
            return ts - self.until + 1
        return 0


def _key_to_json(kind: str, key: Hashable) -> Any:
    return list(cast(tuple[Any, ...], key)) if kind in ("fwmarks", "lb_index", "ports") else key


def _key_from_json(kind: str, key: Any) -> Hashable:
    return tuple(key) if kind in ("fwmarks", "lb_index", "ports") else key


def _value_to_json(value: Any) -> Any:
    return value.to_dict() if isinstance(value, NetnsName | AddrName) else value


def _value_from_json(kind: str, value: Any) -> Any:
    if value is None:
        return None
    if kind == "netns":
        return NetnsName(**value)
    if kind == "addrs":
        return AddrName(**value)
    return value


class NameHistory:
    """Thread-safe store of what every key meant when; fed by readers, read by resolvers.

    keep_closed_ns: forget spans that closed this long before the newest change, and their
    log entries (live histories); None keeps everything (replay). Log entries are numbered
    from 0 in the order applied; the numbers of forgotten entries are not reused."""

    def __init__(self, keep_closed_ns: int | None = None) -> None:
        self._lock = threading.Lock()
        self._spans: dict[str, dict[Hashable, list[_Span]]] = {k: {} for k in KINDS}
        self._open: dict[tuple[str, str, Hashable], _Span] = {}  # (source, kind, key) ->
        self._log: list[tuple[int, dict[str, Any]]] = []  # (sequence number, change)
        self._next_seq = 0
        self._version = 0
        self._keep = keep_closed_ns
        self._newest = 0  # the latest change time seen
        self._next_prune = 0 if keep_closed_ns is None else keep_closed_ns

    def observe(self, source: str, topo: Topology, ts_ns: int, rank: int,
                new_since: int | None = None) -> int:
        """Record that `source` (e.g. "docker:node1") now sees `topo`; returns #changes.

        new_since: when `source` last looked; a key it did not know then is valid from then
        on (it appeared in between), so that its first events, which came before this
        reading, are named too."""
        with self._lock:
            n = 0
            for kind in KINDS:
                now: dict[Hashable, Any] = getattr(topo, kind)
                before = {k: s.value for (src, kd, k), s in self._open.items()
                          if src == source and kd == kind}
                for key, value in before.items():
                    if now.get(key) != value:
                        self._apply(ts_ns, source, rank, kind, key, None)
                        n += 1
                for key, value in now.items():
                    if before.get(key) != value:
                        since = ts_ns if new_since is None or key in before else new_since
                        self._apply(since, source, rank, kind, key, value)
                        n += 1
            return n

    def forget_source(self, source: str, ts_ns: int) -> None:
        """Close every span of `source` (its node is gone for good)."""
        self.observe(source, Topology(), ts_ns, 0)

    def _apply(self, ts: int, source: str, rank: int, kind: str, key: Hashable, value: Any) -> None:
        seq = self._next_seq
        self._next_seq += 1
        self._version += 1
        self._log.append((seq, {
            "t": ts, "src": source, "rank": rank, "kind": kind,
            "key": _key_to_json(kind, key), "value": _value_to_json(value),
        }))
        old = self._open.pop((source, kind, key), None)
        if old is not None:
            old.until, old.closed = ts, seq
        if value is not None:
            span = _Span(ts, None, rank, value, seq)
            self._open[(source, kind, key)] = span
            self._spans[kind].setdefault(key, []).append(span)
        self._newest = max(self._newest, ts)
        if self._keep is not None and self._newest >= self._next_prune:
            # Every quarter of the window: each pass costs one walk over what is kept.
            self._next_prune = self._newest + self._keep // 4
            self._forget_before(self._newest - self._keep)

    def _forget_before(self, horizon: int) -> None:
        """Drop spans closed before `horizon`, keys left without any, and every log entry
        older than horizon that no kept span needs (its opening and closing entries)."""
        needed: set[int] = set()
        for spans_of in self._spans.values():
            for key in list(spans_of):
                kept = [sp for sp in spans_of[key] if sp.until is None or sp.until >= horizon]
                if not kept:
                    del spans_of[key]
                    continue
                spans_of[key] = kept
                for sp in kept:
                    needed.add(sp.opened)
                    if sp.closed is not None:
                        needed.add(sp.closed)
        before = len(self._log)
        self._log = [(seq, c) for seq, c in self._log if c["t"] >= horizon or seq in needed]
        if len(self._log) != before:
            self._version += 1

    def lookup(self, kind: str, key: Hashable, ts_ns: int) -> Any:
        """The value of key at ts_ns; outside every span, the value of the nearest span."""
        with self._lock:
            spans = self._spans[kind].get(key)
            if not spans:
                return None
            if len(spans) == 1:  # the common case: one name for the key, ever
                return spans[0].value
            # A task that died later keeps its name; a packet seen just before Docker's event
            # (or after a removal) still gets the nearest name rather than none.
            best = min(spans, key=lambda s: (s.distance(ts_ns), s.rank, -s.since))
            return best.value

    def known_at(self, kind: str, key: Hashable, ts_ns: int, rank: int | None = None) -> bool:
        """Whether a span of key (of that rank) covers ts_ns (lookup() also answers from the
        nearest)."""
        with self._lock:
            return any(s.distance(ts_ns) == 0 and rank in (None, s.rank)
                       for s in self._spans[kind].get(key) or ())

    @property
    def version(self) -> int:
        """Grows with every change: answers cached at one version stay true until it moves."""
        return self._version

    def timeless(self, kind: str, key: Hashable) -> bool:
        """Whether key's value is the same at every time (it has at most one span)."""
        with self._lock:
            return len(self._spans[kind].get(key) or ()) <= 1

    def keys(self, kind: str) -> list[Hashable]:
        with self._lock:
            return list(self._spans[kind])

    def to_dict(self, start: int = 0) -> dict[str, Any]:
        """The change log from entry number `start` on (0: all that is kept, which rebuilds
        every span kept); `count` is the number the next entry will get."""
        with self._lock:
            first = bisect_left(self._log, start, key=itemgetter(0))
            return {"version": SNAPSHOT_VERSION, "clock": "CLOCK_MONOTONIC",
                    "count": self._next_seq, "changes": [c for _, c in self._log[first:]]}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> NameHistory:
        if d.get("version") != SNAPSHOT_VERSION:
            raise TraceFileError(
                f"names snapshot version {d.get('version')!r} is not {SNAPSHOT_VERSION}: "
                "record the trace again with this swarmtrace")
        history = cls()
        for c in d["changes"]:
            history.apply(c)
        return history

    def apply(self, change: dict[str, Any]) -> None:
        """Replay one entry of a change log (a file's, or a remote agent's)."""
        try:
            kind = change["kind"]
            with self._lock:
                self._apply(int(change["t"]), change["src"], int(change["rank"]), kind,
                            _key_from_json(kind, change["key"]),
                            _value_from_json(kind, change["value"]))
        except (KeyError, TypeError, ValueError) as err:
            raise TraceFileError(
                f"names snapshot is damaged ({err!r}): record the trace again") from err


class RecordedNames(Names):
    """Names answered from a NameHistory: the replay resolver, and the base of live ones."""

    def __init__(self, history: NameHistory | None = None) -> None:
        self.history = history if history is not None else NameHistory()

    def netns(self, inode: int, ts_ns: int) -> NetnsName | None:
        return cast(NetnsName | None, self.history.lookup("netns", inode, ts_ns))

    def addr(self, ip: str, ts_ns: int) -> AddrName | None:
        return cast(AddrName | None, self.history.lookup("addrs", ip, ts_ns))

    def fwmark(self, netns_inode: int, mark: int, ts_ns: int) -> str | None:
        """A MARK rule in that netns first, else the node's LocalLBIndex for that mark."""
        service = self.history.lookup("fwmarks", (netns_inode, mark), ts_ns)
        if service is not None:
            return cast(str, service)
        ns = self.netns(netns_inode, ts_ns)
        if ns is not None and ns.node is not None:
            service = self.history.lookup("lb_index", (ns.node, mark), ts_ns)
            if service is not None:
                return cast(str, service)
        # Unknown node: a mark that means one service on every node still names it.
        candidates = {self.history.lookup("lb_index", k, ts_ns)
                      for k in self.history.keys("lb_index") if k[1] == mark}  # type: ignore[index]
        return cast(str, candidates.pop()) if len(candidates) == 1 else None

    def fwmark_timeless(self, netns_inode: int, mark: int) -> bool:
        """Whether fwmark() answers the same at every time: every key it may read has at
        most one span."""
        h = self.history
        return h.timeless("fwmarks", (netns_inode, mark)) and h.timeless("netns", netns_inode) \
            and all(h.timeless("lb_index", k) for k in h.keys("lb_index")
                    if k[1] == mark)  # type: ignore[index]

    def published_port(self, port: int, ts_ns: int, proto: str = "tcp") -> str | None:
        """The service that publishes `port` on the routing mesh."""
        return cast(str | None, self.history.lookup("ports", (proto, port), ts_ns))

    def network_vni(self, network: str, ts_ns: int) -> int | None:
        """The VXLAN VNI that carries an overlay network between nodes."""
        found = [k for k in self.history.keys("vnis")
                 if self.history.lookup("vnis", k, ts_ns) == network]
        return cast(int, found[0]) if len(found) == 1 else None

    def snapshot(self) -> dict[str, Any]:
        return self.history.to_dict()

    def changes_since(self, start: int) -> dict[str, Any]:
        """Only the changes numbered `start` on (a trace file's "change" record); pass the
        previous answer's `count` as the next start."""
        return self.history.to_dict(start)


def recorded_names(d: dict[str, Any]) -> Names:
    """Names that resolve exactly as the live resolver that wrote snapshot `d` did."""
    return RecordedNames(NameHistory.from_dict(d))
