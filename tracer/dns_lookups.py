"""When a failed DNS query is final: the lookups in progress, one chain of queries per asking
netns, address and server. A failed query is held back until its lookup asks the next name (it
was then a step of the resolver's search, tracer/dns_search.py, not a failure) or asks nothing
for LOOKUP_GAP_NS (it failed). Its answer is joined by tracer/dns_join.py before.

A server that forwards the names it does not know (Docker DNS, from the asking netns) makes
lookups of its own: its failed queries of a name a client's query was asking at the time go
with that query, steps of the search when it was one, else `dns-forwarded` beside its failure
(one verdict per failed lookup, the client's)."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace

from tracer.dns_join import MAX_KEYS, DnsAnswers
from tracer.dns_search import same_lookup
from tracer.model import DnsQuery, Request, Status

# A resolver asks the next name of a lookup as soon as the previous one failed.
LOOKUP_GAP_NS = 1_000_000_000
MAX_STEPS = 64  # search steps remembered for the forwards Docker DNS made of them
MAX_TRIED = 8  # a lookup's queries remembered: a name and its search domains (glibc takes 6)
LookupKey = tuple[int, str, str]  # asking netns, address, server


class HeldLookups:
    """The lookups in progress, with their failed queries held back; the latest search steps."""

    def __init__(self, answers: DnsAnswers) -> None:
        self._answers = answers  # a held query may be answered after all
        # Per netns, asking address and server: the lookup in progress.
        self._lookups: dict[LookupKey, Lookup] = {}
        # The latest search steps: netns, name, from when asked until the next name was.
        self._steps: deque[tuple[int, str, int, int]] = deque(maxlen=MAX_STEPS)
        # Per held query (its id), the forwards of it whose own lookup was decided first (the
        # server asked another name meanwhile): they go out with it.
        self._waiting: dict[int, list[Request]] = {}

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
            del self._lookups[key]
            out += self._decided(look.held)  # that lookup gave up: its last queries failed
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
            out += steps + self._waited(steps) + self._forwarded(key)
        if req.status != Status.DNS_FAILED:
            if look is not None:
                del self._lookups[key]
                out += self._decided(look.held)  # same name, another question: failed on its own
            return [*out, req]
        if self._forwarded_for_step(key, req):
            req.status = Status.DNS_SEARCH
            return [*out, req]
        if look is None:
            look = self._lookups[key] = Lookup()
            if len(self._lookups) > MAX_KEYS:
                out += self._decided(self._lookups.pop(next(iter(self._lookups))).held)
        look.tried = (*look.tried[-MAX_TRIED:], (DnsQuery(req.id, dns.name, dns.rcode),
                                                 req.end_ns, dns.qtype))
        look.held.append(req)
        return out

    def _forwarded(self, key: LookupKey) -> list[Request]:
        """The held queries a server asked on behalf of the search steps (Docker DNS forwards
        a name it does not know, from the asking netns). Steps of the search too."""
        found: list[Request] = []
        for look in self._others(key):
            for r in look.held:
                if self._forwarded_for_step(key, r):
                    r.status = Status.DNS_SEARCH
                    found.append(r)
            look.held = [r for r in look.held if r.status != Status.DNS_SEARCH]
        return found

    def _waited(self, steps: list[Request]) -> list[Request]:
        """The forwards that waited for these search steps: steps too."""
        found = [f for r in steps for f in self._waiting.pop(r.id, ())]
        for f in found:
            f.status = Status.DNS_SEARCH
        return found

    def _decided(self, held: list[Request]) -> list[Request]:
        """The held queries of a lookup that is over, as they go out: a failed one after the
        forwards a server asked upstream for it (dns-forwarded: its verdict covers them). A
        forward of a query still held waits for it."""
        out: list[Request] = []
        for r in held:
            client = self._client_of(r)
            if client is not None:
                self._waiting.setdefault(client.id, []).append(r)
                if len(self._waiting) > MAX_KEYS:
                    out += self._waiting.pop(next(iter(self._waiting)))  # as they are
                continue
            forwards = self._waiting.pop(r.id, [])
            if r.status is Status.DNS_FAILED:
                forwards += self._take_forwards(r)
                for f in forwards:
                    f.status = Status.DNS_FORWARDED
                    if f.dns is not None:
                        f.dns = replace(f.dns, forwarded_for=r.id)
            out += [*forwards, r]
        return out

    def _others(self, key: LookupKey) -> Iterator[Lookup]:
        """The lookups in progress in key's netns but key's own: a server's beside a client's."""
        return (look for k, look in self._lookups.items() if k[0] == key[0] and k != key)

    def _client_of(self, req: Request) -> Request | None:
        """The query held in another lookup that req, a failed query, was a forward of."""
        return next((p for look in self._others(lookup_key(req)) for p in look.held
                     if _forward_of(req, p)), None)

    def _take_forwards(self, req: Request) -> list[Request]:
        """The forwards of req, a failed query, held in other lookups: out of them."""
        found: list[Request] = []
        for look in self._others(lookup_key(req)):
            found += [r for r in look.held if _forward_of(r, req)]
            look.held = [r for r in look.held if not _forward_of(r, req)]
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
            out += self._decided(self._lookups.pop(k).held)
        return out

    def _answered_late(self) -> list[Request]:
        """Held queries whose answer with addresses came after all: a resolver's A and AAAA
        go on one socket, and the reply that ended the query (the second) may be seen before
        the records it carries. The lookup is over: it found its address."""
        out: list[Request] = []
        for k, look in list(self._lookups.items()):
            found = next((r for r in look.held if self._answers.has_addresses(r)), None)
            if found is None:
                continue
            del self._lookups[k]
            self._answers.answer_again(found)
            out += self._decided([r for r in look.held if r is not found] + [found])
        return out

    def held(self) -> list[Request]:
        """Every held query, decided (the end of a trace): the lookup asked nothing more."""
        out: list[Request] = []
        while self._lookups:
            out += self._decided(self._lookups.pop(next(iter(self._lookups))).held)
        out += [r for waiting in self._waiting.values() for r in waiting]
        self._waiting.clear()
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


def _forward_of(req: Request, client: Request) -> bool:
    """Whether req, a failed query, asked client's name after client did, while client's
    lookup could still go on (the caller knows it came from another lookup of client's netns:
    a server asking on its behalf). Docker DNS forwards a name's A and AAAA one after the
    other: the second after it answered the first, which ended client's query."""
    return req.status is Status.DNS_FAILED and req.dns is not None \
        and client.dns is not None and req.dns.name == client.dns.name \
        and client.start_ns <= req.start_ns <= client.end_ns + LOOKUP_GAP_NS


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
