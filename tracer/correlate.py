"""Events -> requests: join the per-netns events of a connection into one hop-by-hop request.

The coordinator: each event finds its request in the flow index (tracer/flow_index.py), or
starts one; forward packets draw its path (tracer/path_hops.py), drops add theirs
(tracer/drops.py), replies end it (tracer/request_end.py), DNS answers join it
(tracer/dns_join.py), and a failed query waits for its lookup to decide
(tracer/dns_lookups.py). Works incrementally on a live stream with bounded memory: idle requests
are closed and forgotten (tracer/in_flight.py)."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from tracer.dns_join import DnsAnswers
from tracer.dns_lookups import HeldLookups, asking
from tracer.drops import cuts, dropped, reason_name
from tracer.event_roles import may_change_requests, starts_connection
from tracer.events import (
    F_CT,
    F_REPLY_DIR,
    TCP_SYN,
    Event,
    EventRow,
    Flow,
    Point,
    as_event,
    event_rows,
)
from tracer.flow_index import FlowIndex, Index
from tracer.in_flight import IDLE_NS, MAX_OPEN, InFlight, InFlightRequests
from tracer.model import Request, Resumed, Status
from tracer.past_connections import PastConnections
from tracer.path_hops import balanced, crossed, forward
from tracer.request_end import BY_TIME, finish, replied

_PROTO = {6: "tcp", 17: "udp"}
# Members as plain names: reading an enum member off its class costs a lookup per event.
_DNS, _DROP, _LB, _VXLAN_IN = Point.DNS, Point.DROP, Point.LB, Point.VXLAN_IN


class Correlator:
    """Feed decoded events in arrival order; get back the requests that completed."""

    def __init__(self, drop_reasons: tuple[str, ...] = (), idle_ns: int = IDLE_NS,
                 max_open: int = MAX_OPEN) -> None:
        self._drop_reasons = drop_reasons
        self._in_flight = InFlightRequests(idle_ns, max_open)
        self._flows = FlowIndex()
        self.now_ns = 0
        # The last DNS answer seen per netns: joins the connection that follows it.
        self._answers = DnsAnswers()
        self._lookups = HeldLookups(self._answers)
        self._past = PastConnections()

    @property
    def open_requests(self) -> list[Request]:
        return [o.req for o in self._in_flight.by_id.values()]

    def feed_array(self, records: np.ndarray) -> list[Request]:
        if len(records):
            self.now_ns = max(self.now_ns, int(records["ts_ns"].max()))
        keep = may_change_requests(records)
        return self._feed(event_rows(records if keep.all() else records[keep]))

    def feed(self, events: Iterable[Event]) -> list[Request]:
        events = list(events)
        if events:
            self.now_ns = max(self.now_ns, max(e.ts_ns for e in events))
        return self._feed(events)

    def _feed(self, rows: Iterable[EventRow]) -> list[Request]:
        """Events of a batch whose latest time is already in now_ns. The lookups are done here,
        not in a method per event: most events only find their request, or none, and the call
        would cost more than the lookups."""
        done: list[Request] = []
        by_proto = self._flows.by_proto
        touch = self._in_flight.by_id.move_to_end
        for row in rows:
            ts, _, netns, _, _, _, _, _, point, proto, tcp_flags, ctinfo, flags, pkt, orig, _ = row
            index = by_proto.get(proto)
            if index is None:
                continue  # neither TCP nor UDP
            if _DNS <= point <= _VXLAN_IN:  # DNS, VXLAN_OUT, VXLAN_IN: none a request's own
                self._aside(as_event(row), index)
                continue
            # The request this event belongs to, and whether it travels in the reply direction.
            o: InFlight | None = None
            reply = flags & F_REPLY_DIR
            if flags & F_CT:
                hit = index.get(orig)  # type: ignore[arg-type]
                if hit is not None and not hit[1]:
                    o = hit[0]
            if o is None:
                hit = index.get(pkt)
                if hit is not None:
                    o, reply = hit
                elif reply or not starts_connection(point, proto, tcp_flags, flags, ctinfo, pkt) \
                        or (proto == 17 and not flags & F_CT and self._in_flight.late_udp(pkt)):
                    if point == _DROP and proto == 6:
                        self._cut(as_event(row))
                    continue
                else:
                    client = orig if flags & F_CT and orig is not None else pkt
                    o = self._in_flight.new(_PROTO[proto], client, ts)
                    FlowIndex.register(o, index, client)
            o.last_ts = ts
            touch(o.req.id)
            if point == _DROP:
                e = as_event(row)
                dropped(o, e, reason_name(self._drop_reasons, e.aux))
            elif point == _LB:
                balanced(o, as_event(row), index)
            elif replied(o, netns, ts, tcp_flags, point, self._answers) if reply \
                    else forward(o, row, index):
                done += self._close(o)
        done.extend(self.expire(self.now_ns))
        return done

    def _aside(self, e: Event, index: Index) -> None:
        """An event beside the packets of requests: a DNS answer, an overlay crossing."""
        if e.point == _DNS:
            self._answers.add(e)  # kept per netns: the query may be over, the next one not
        else:
            crossed(index, e)

    def expire(self, now_ns: int) -> list[Request]:
        """Close requests idle since before now_ns - idle, and the oldest beyond the cap; and
        report the failed DNS queries whose lookup asked no other name after them."""
        done = [r for o in self._in_flight.idle(now_ns) for r in self._close(o)]
        return done + self._lookups.gave_up(now_ns, lambda: asking(self.open_requests))

    def mark_open(self, note: str) -> None:
        """Note on every request in flight that it may be incomplete (events were lost)."""
        for o in self._in_flight.by_id.values():
            o.req.missing.append(note)

    def flush(self) -> list[Request]:
        """Close everything still open (end of a replay, end of a trace)."""
        done = [r for o in list(self._in_flight.by_id.values()) for r in self._close(o)]
        return done + self._lookups.held()

    def _cut(self, e: Event) -> None:
        """A TCP packet dropped in the middle of a connection no open request holds: a
        request of its own when drops.cuts says so, resuming a remembered connection."""
        if e.tcp_flags & TCP_SYN:
            return
        reason = reason_name(self._drop_reasons, e.aux)
        past = self._past.find(e.pkt)
        if not cuts(e, reason, past):
            return
        o = self._in_flight.new("tcp", e.pkt, e.ts_ns)
        req, index = o.req, self._flows.by_proto[6]
        req.resumed = Resumed(0, 0)
        if past is None:
            FlowIndex.register(o, index, e.pkt)
        else:
            req.client = Flow(*past.client)
            req.backend_addr, req.mode = past.backend_addr, past.mode
            req.resumed = Resumed(past.id, past.opened_ns)
            self._past.forget(past)
            for t in past.tuples:
                FlowIndex.register(o, index, Flow(*t))
        dropped(o, e, reason)

    def _close(self, o: InFlight) -> list[Request]:
        """o's request, ended; none while it is a DNS query whose lookup may go on (a failed
        search-domain expansion is then a step of it), and earlier ones it decides."""
        req = o.req
        self._in_flight.closed(o)
        self._flows.forget(o)
        finish(o)
        if req.proto == "tcp" and req.status == Status.OK:
            self._past.remember(req, o.tuples)
        if self._answers.join(req, o.last_ts):
            req.hops.sort(key=BY_TIME)
        return self._lookups.settle(req)
