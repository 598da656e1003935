"""DNS answers joined to requests: the query a response answers, and the connection that
used an address from it. The kernel reports each A record of an answer (Point.DNS)."""

from __future__ import annotations

from dataclasses import dataclass

from tracer.events import Event
from tracer.model import Hop, HopKind, Request


@dataclass(frozen=True, slots=True)
class Answer:
    name: str
    addrs: tuple[str, ...]
    ttl: int
    ts_ns: int


class DnsAnswers:
    """The last DNS answer seen per netns."""

    def __init__(self) -> None:
        self._by_netns: dict[int, Answer] = {}

    def get(self, netns: int) -> Answer | None:
        return self._by_netns.get(netns)

    def add(self, e: Event) -> None:
        """One A record of a DNS answer (record index in mark's low byte), in order."""
        assert e.orig is not None
        name, addr = e.orig.daddr, e.orig.saddr
        ans = self._by_netns.get(e.netns)
        if e.mark & 0xFF == 0 or ans is None or ans.name != name:
            ans = Answer(name, (), e.aux, e.ts_ns)
        self._by_netns[e.netns] = Answer(name, (*ans.addrs, addr), ans.ttl, ans.ts_ns)

    def join(self, req: Request, last_ts: int) -> bool:
        """A DNS answer becomes a hop of its query, and of the connection that used it.
        Whether it did."""
        if not req.hops:
            return False
        home = req.hops[0].netns
        ans = self._by_netns.get(home)
        if ans is None:
            return False
        if req.client.dport == 53:
            if not req.start_ns <= ans.ts_ns <= last_ts:
                return False
            req.hops.append(Hop(HopKind.DNS, ans.ts_ns, home, f"netns:{home}",
                                detail=f"{ans.name} -> {', '.join(ans.addrs)} "
                                       f"(ttl {ans.ttl})"))
            return True
        if req.client.daddr not in ans.addrs \
                or req.start_ns - ans.ts_ns > max(ans.ttl, 1) * 1_000_000_000:
            return False
        req.hops.append(Hop(HopKind.DNS, ans.ts_ns, home, f"netns:{home}",
                            detail=f"{ans.name} -> {', '.join(ans.addrs)}: "
                                   f"picked {req.client.daddr}"))
        if len(ans.addrs) > 1 and req.mode == "direct":
            req.mode = "dnsrr"
        return True
