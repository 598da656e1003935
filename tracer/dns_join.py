"""DNS answers joined to requests: the response a query got (its addresses, or its rcode), and
the connection that used an address from it. The kernel reports each A record of a response
(Point.DNS), and a response without one once (F_NO_ADDR). Whether a failed query is final
(its lookup may go on with another name) is tracer/dns_lookups.py's."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, replace
from operator import attrgetter
from typing import Any

from tracer.events import F_NO_ADDR, Event
from tracer.model import DnsResult, Hop, HopKind, Request, Status

RECENT = 16  # responses kept per netns: a query finds its own among them
MAX_KEYS = 4096  # netns (and lookups in progress) remembered
RCODES = ("NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN", "NOTIMP", "REFUSED")
QTYPES = {1: "A", 5: "CNAME", 12: "PTR", 15: "MX", 16: "TXT", 28: "AAAA", 33: "SRV"}


def rcode_name(rcode: int) -> str:
    return RCODES[rcode] if rcode < len(RCODES) else f"RCODE{rcode}"


def qtype_name(qtype: int) -> str:
    # Events before version 4 carry no question type: all of them were A records.
    return QTYPES.get(qtype or 1, f"TYPE{qtype}")


@dataclass(frozen=True, slots=True)
class Answer:
    """One response: its A records in order (none for an error or an empty answer)."""

    name: str
    addrs: tuple[str, ...]
    ttl: int
    ts_ns: int
    to: tuple[str, int] = ("", 0)  # the asking socket: the response's destination
    qtype: int = 1
    rcode: int = 0
    records: int = 0  # the response's answer count, records of every type

    @property
    def answered(self) -> bool:
        """An address, or records of the type asked: the lookup is over."""
        return bool(self.addrs) or (self.rcode == 0 and self.records > 0)


class DnsAnswers:
    """The responses seen lately per netns, the last one with addresses apart."""

    def __init__(self) -> None:
        self._by_netns: dict[int, Answer] = {}
        self._recent: dict[int, deque[Answer]] = {}

    def get(self, netns: int) -> Answer | None:
        return self._by_netns.get(netns)

    def add(self, e: Event) -> None:
        """One A record of a response (record index in mark's low byte), in order; or the
        one event of a response without any."""
        assert e.orig is not None
        name, addr, to = e.orig.daddr, e.orig.saddr, (e.pkt.daddr, e.pkt.dport)
        recent = self._recent.get(e.netns)
        if recent is None:
            recent = self._recent[e.netns] = deque(maxlen=RECENT)
            _bound(self._recent)
        last = recent[-1] if recent else None
        if e.flags & F_NO_ADDR:
            recent.append(Answer(name, (), 0, e.ts_ns, to, e.ct_status, e.ctinfo, e.mark >> 8))
            return
        if e.mark & 0xFF == 0 or last is None or last.name != name or last.to != to:
            ans = Answer(name, (addr,), e.aux, e.ts_ns, to, e.ct_status, e.ctinfo, e.mark >> 8)
            recent.append(ans)
        else:
            ans = recent[-1] = replace(last, addrs=(*last.addrs, addr))
        self._by_netns[e.netns] = ans
        _bound(self._by_netns)

    def settles(self, req: Request) -> bool:
        """Whether a response to the query req, in the netns it asked from, ends it: one with
        addresses or an error. (An empty one does not: resolvers ask A and AAAA on one
        socket, and Docker answers AAAA with nothing.)"""
        return any(a.answered or a.rcode for a in self._responses(req, 1 << 63))

    def join(self, req: Request, last_ts: int) -> bool:
        """A DNS answer becomes a hop of its query, and of the connection that used it.
        Whether it did."""
        if not req.hops:
            return False
        if req.client.dport == 53:
            return self._answer_query(req, last_ts)
        home = req.hops[0].netns
        ans = self._by_netns.get(home)
        if ans is None or req.client.daddr not in ans.addrs \
                or req.start_ns - ans.ts_ns > max(ans.ttl, 1) * 1_000_000_000:
            return False
        req.hops.append(Hop(HopKind.DNS, ans.ts_ns, home, f"netns:{home}",
                            detail=f"{ans.name} -> {', '.join(ans.addrs)}: "
                                   f"picked {req.client.daddr}"))
        if len(ans.addrs) > 1 and req.mode == "direct":
            req.mode = "dnsrr"
        return True

    def _responses(self, req: Request, last_ts: int) -> list[Answer]:
        """The responses to req's socket in the netns it asked from, while it was open."""
        if not req.hops:
            return []
        to = (req.client.saddr, req.client.sport)
        return [a for a in self._recent.get(req.hops[0].netns, ())
                if a.to == to and req.start_ns <= a.ts_ns <= last_ts]

    def _answer_query(self, req: Request, last_ts: int) -> bool:
        """The response that decided the query (the one with addresses, else an error, else
        the last), as its hop and req.dns; a query answered without an address failed."""
        mine = self._responses(req, last_ts)
        if not mine:
            return False
        ans = next((a for a in mine if a.answered), None) \
            or next((a for a in mine if a.rcode), mine[-1])
        home = req.hops[0].netns
        rcode = rcode_name(ans.rcode)
        if ans.addrs:
            detail = f"{ans.name} -> {', '.join(ans.addrs)} (ttl {ans.ttl})"
        elif ans.answered:
            detail = f"{ans.name} -> {ans.records} {qtype_name(ans.qtype)} record(s)"
        else:
            detail = f"{ans.name} -> {rcode if ans.rcode else 'no address'}"
        req.hops.append(Hop(HopKind.DNS, ans.ts_ns, home, f"netns:{home}", detail=detail))
        req.dns = DnsResult(ans.name, qtype_name(ans.qtype), rcode, ans.addrs)
        if not ans.answered and req.status == Status.OK:
            req.status = Status.DNS_FAILED
        return True

    def has_addresses(self, req: Request) -> bool:
        """Whether a response to the query req carried addresses, whenever it came."""
        return any(a.addrs for a in self._responses(req, 1 << 63))

    def answer_again(self, req: Request) -> None:
        """req, a query held as failed, joined again to all its responses: the reply that
        ended it (a resolver's A and AAAA go on one socket: the second) may be seen before
        the records the other carries. It keeps the lookup's earlier queries."""
        req.hops = [h for h in req.hops if h.kind != HopKind.DNS]
        req.status = Status.OK  # failed by the first join only: its reply had come
        tried = req.dns.tried if req.dns is not None else ()
        self._answer_query(req, 1 << 63)
        if req.dns is not None:
            req.dns = replace(req.dns, tried=tried)
        req.hops.sort(key=attrgetter("ts_ns"))


def _bound(d: dict[Any, Any]) -> None:
    """Forget the oldest entry beyond MAX_KEYS: netns come and go for days (task churn)."""
    if len(d) > MAX_KEYS:
        del d[next(iter(d))]

