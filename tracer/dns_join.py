"""DNS answers joined to requests: the response a query got (its addresses, or its rcode), the
connection that used an address from it, and the queries one lookup made (a name and its
search-domain expansions). The kernel reports each A record of a response (Point.DNS), and a
response without one once (F_NO_ADDR).

A failed query is held back until its lookup asks the next name (it was then a step of the
resolver's search, tracer/dns_search.py, not a failure) or gives up (it failed)."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from operator import attrgetter
from typing import Any

from tracer.dns_search import same_lookup
from tracer.events import F_NO_ADDR, Event
from tracer.model import DnsQuery, DnsResult, Hop, HopKind, Request, Status

RECENT = 16  # responses kept per netns: a query finds its own among them
# A resolver asks the next name of a lookup as soon as the previous one failed.
LOOKUP_GAP_NS = 1_000_000_000
MAX_KEYS = 4096  # netns (and lookups in progress) remembered
MAX_STEPS = 64  # search steps remembered for the forwards Docker DNS made of them
MAX_TRIED = 8  # a lookup's queries remembered: a name and its search domains (glibc takes 6)
RCODES = ("NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN", "NOTIMP", "REFUSED")
LookupKey = tuple[int, str, str]  # asking netns, address, server
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
    """The responses seen lately per netns, the last one with addresses apart; the lookups in
    progress, with their failed queries held back."""

    def __init__(self) -> None:
        self._by_netns: dict[int, Answer] = {}
        self._recent: dict[int, deque[Answer]] = {}
        # Per netns, asking address and server: the lookup in progress.
        self._lookups: dict[LookupKey, Lookup] = {}
        # The latest search steps: netns, name, from when asked until the next name was.
        self._steps: deque[tuple[int, str, int, int]] = deque(maxlen=MAX_STEPS)

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

    def settle(self, req: Request) -> list[Request]:
        """The requests over now that req closed: req, unless it is a failed query whose lookup
        may go on with another name (held until it does, or gives up), and the held queries
        of its lookup that it decides: steps of the search when it asks another name."""
        dns = req.dns
        if dns is None or req.client.dport != 53:
            return [req]
        key = lookup_key(req)
        look = self._lookups.get(key)
        out: list[Request] = []
        if look is not None and not look.goes_on(dns.name, dns.qtype, req.start_ns):
            out += look.held  # that lookup gave up: its last queries failed
            del self._lookups[key]
            look = None
        if look is not None:
            # The queries asked before this one, of other names (A and AAAA of one name may
            # go in parallel, on sockets of their own).
            tried = tuple(q for q, ended, _ in look.tried if ended <= req.start_ns
                          and q.name != dns.name)
            req.dns = replace(dns, tried=tried)
            steps = [r for r in look.held if r.dns is not None and r.dns.name != dns.name]
            for r in steps:
                r.status = Status.DNS_SEARCH  # the resolver went on: not a failure
            look.held = [r for r in look.held if r.status != Status.DNS_SEARCH]
            for r in steps:
                # Until the next name was asked: what Docker DNS forwarded for the step.
                self._steps.append((key[0], r.dns.name if r.dns else "", r.start_ns,
                                    req.start_ns))
            out += steps + self._forwarded(key)
        if req.status != Status.DNS_FAILED:
            if look is not None:
                out += look.held  # same name, another question: failed on its own
                del self._lookups[key]
            return [*out, req]
        if self._forwarded_for_step(key, req):
            req.status = Status.DNS_SEARCH
            return [*out, req]
        if look is None:
            look = self._lookups[key] = Lookup()
            if len(self._lookups) > MAX_KEYS:
                out += self._lookups.pop(next(iter(self._lookups))).held
        look.tried = (*look.tried[-MAX_TRIED:], (DnsQuery(req.id, dns.name, dns.rcode),
                                                 req.end_ns, dns.qtype))
        look.held.append(req)
        return out

    def _forwarded(self, key: LookupKey) -> list[Request]:
        """The held queries a server asked on behalf of the search steps (Docker DNS forwards
        a name it does not know, from the asking netns). Steps of the search too."""
        found: list[Request] = []
        for k, look in self._lookups.items():
            if k[0] != key[0] or k == key:
                continue
            for r in look.held:
                if self._forwarded_for_step(k, r):
                    r.status = Status.DNS_SEARCH
                    found.append(r)
            look.held = [r for r in look.held if r.status != Status.DNS_SEARCH]
        return found

    def _forwarded_for_step(self, key: LookupKey, req: Request) -> bool:
        """Whether req, a failed query, asked a recent search step's name from the step's
        netns while the step was out: a forward of it (also when it ends after the step was
        decided)."""
        name = req.dns.name if req.dns is not None else ""
        return any(netns == key[0] and step_name == name and start <= req.start_ns <= until
                   for netns, step_name, start, until in self._steps)

    def gave_up(self, now_ns: int, asking: Callable[[], dict[LookupKey, int]]) -> list[Request]:
        """The held queries answered after all, and those of lookups that asked nothing more
        for LOOKUP_GAP_NS (asking: the latest start of a query in flight per lookup key):
        their failures are final."""
        if not self._lookups:
            return []
        out = self._answered_late()
        late = [k for k, look in self._lookups.items() if look.tried[-1][1] + LOOKUP_GAP_NS
                < now_ns]
        if not late:
            return out
        started = asking()
        for k in late:
            if self._lookups[k].next_asked(started.get(k, 0)):
                continue  # its next query is in flight: that one decides
            out += self._lookups.pop(k).held
        return out

    def _answered_late(self) -> list[Request]:
        """Held queries whose answer with addresses came after all: a resolver's A and AAAA
        go on one socket, and the reply that ended the query (the second) may be seen before
        the records it carries. The lookup is over: it found its address."""
        out: list[Request] = []
        for k, look in list(self._lookups.items()):
            found = next((r for r in look.held if any(a.addrs for a in self._responses(
                r, 1 << 63))), None)
            if found is None:
                continue
            del self._lookups[k]
            found.hops = [h for h in found.hops if h.kind != HopKind.DNS]
            found.status = Status.OK  # failed by this join only: its reply had come
            tried = found.dns.tried if found.dns is not None else ()
            self._answer_query(found, 1 << 63)
            if found.dns is not None:
                found.dns = replace(found.dns, tried=tried)
            found.hops.sort(key=attrgetter("ts_ns"))
            out += [r for r in look.held if r is not found] + [found]
        return out

    def held(self) -> list[Request]:
        """Every held query, as it is (the end of a trace): the lookup asked nothing more."""
        out = [r for look in self._lookups.values() for r in look.held]
        self._lookups.clear()
        return out


@dataclass(slots=True)
class Lookup:
    """The failed queries of a lookup in progress, oldest first, each with when it ended; and
    those of them not reported yet: the last step, held until the lookup goes on or gives up."""

    tried: tuple[tuple[DnsQuery, int, str], ...] = ()  # with when it ended, and its qtype
    held: list[Request] = field(default_factory=list)

    def goes_on(self, name: str, qtype: str, start_ns: int) -> bool:
        """Whether a query of name, started then, is this lookup's: soon after its last query
        ended (or beside it: A and AAAA may go in parallel, on sockets of their own), a name
        of the same lookup, not one asked again with the same type after its answer (a retry,
        a lookup of its own; Docker DNS forwards a name's A and AAAA one after the other)."""
        if start_ns > self.tried[-1][1] + LOOKUP_GAP_NS \
                or not same_lookup(self.tried[0][0].name, name):
            return False
        return not any(q.name == name and qt == qtype and ended <= start_ns
                       for q, ended, qt in self.tried)

    def next_asked(self, start_ns: int) -> bool:
        """Whether a query started then may be this lookup's next (its name unknown yet)."""
        last_end = self.tried[-1][1]
        return last_end <= start_ns <= last_end + LOOKUP_GAP_NS


def lookup_key(req: Request) -> LookupKey:
    """One chain of queries per asking netns, address and server: Docker DNS's own forwarding
    to its upstream servers, from the same netns, is a lookup of its own."""
    return req.hops[0].netns, req.client.saddr, req.client.dst


def asking(requests: Iterable[Request]) -> dict[LookupKey, int]:
    """The latest start of a DNS query in flight, per lookup key."""
    started: dict[LookupKey, int] = {}
    for r in requests:
        if r.client.dport == 53 and r.hops:
            k = lookup_key(r)
            started[k] = max(started.get(k, 0), r.start_ns)
    return started


def _bound(d: dict[Any, Any]) -> None:
    """Forget the oldest entry beyond MAX_KEYS: netns come and go for days (task churn)."""
    if len(d) > MAX_KEYS:
        del d[next(iter(d))]

