"""DNS answers joined to requests: the response a query got (its addresses, or its rcode), the
connection that used an address from it, and the queries one lookup made (a name and its
search-domain expansions). The kernel reports each A record of a response (Point.DNS), and a
response without one once (F_NO_ADDR)."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, replace
from typing import Any

from tracer.events import F_NO_ADDR, Event
from tracer.model import DnsQuery, DnsResult, Hop, HopKind, Request, Status

RECENT = 16  # responses kept per netns: a query finds its own among them
# A resolver asks the next name of a lookup as soon as the previous one failed.
LOOKUP_GAP_NS = 1_000_000_000
MAX_KEYS = 4096  # netns (and lookups in progress) remembered
MAX_TRIED = 8  # a lookup's queries remembered: a name and its search domains (glibc takes 6)
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
        # Per netns, asking address and server: the failed queries of the lookup in
        # progress, oldest first, each with when it ended.
        self._lookups: dict[tuple[int, str, str], tuple[tuple[DnsQuery, int], ...]] = {}

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
        # One chain per asking address and server: Docker DNS's own forwarding to its
        # upstream servers, from the same netns, is a lookup of its own.
        key = (home, req.client.saddr, req.client.dst)
        chain = self._lookups.get(key, ())
        if chain and (req.start_ns - chain[-1][1] > LOOKUP_GAP_NS
                      or not any(_same_lookup(q.name, ans.name) for q, _ in chain)):
            chain = ()
        # The queries asked before this one, of other names (A and AAAA of one name may go
        # in parallel, on sockets of their own).
        tried = tuple(q for q, ended in chain if ended <= req.start_ns and q.name != ans.name)
        req.dns = DnsResult(ans.name, qtype_name(ans.qtype), rcode, ans.addrs, tried)
        if ans.answered:
            self._lookups.pop(key, None)
        else:
            self._lookups[key] = (*chain[-MAX_TRIED:], (DnsQuery(req.id, ans.name, rcode), last_ts))
            _bound(self._lookups)
            if req.status == Status.OK:
                req.status = Status.DNS_FAILED
        return True


def _bound(d: dict[Any, Any]) -> None:
    """Forget the oldest entry beyond MAX_KEYS: netns come and go for days (task churn)."""
    if len(d) > MAX_KEYS:
        del d[next(iter(d))]


def _same_lookup(a: str, b: str) -> bool:
    """Two names a resolver tries for one lookup: the name asked and its expansions with the
    search domains share the first label."""
    return a.split(".", 1)[0] == b.split(".", 1)[0]


def split_expansion(names: list[str]) -> tuple[str, list[str]]:
    """The bare name of a lookup's names (the shortest, when every other one extends it),
    and the search domains the others added to it; ("", []) when there is none."""
    bare = min(names, key=len)
    labels = bare.split(".")
    domains = []
    for n in names:
        if n == bare:
            continue
        parts = n.split(".")
        if parts[: len(labels)] != labels:
            return "", []
        domains.append(".".join(parts[len(labels):]))
    return bare, domains
