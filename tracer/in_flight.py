"""The requests in flight: what each one's events showed so far, oldest first, until it is
answered, refused or goes idle. Bounded: idle requests and the oldest beyond a cap close."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

from tracer.events import Event, Flow
from tracer.model import Request

IDLE_NS = 3_000_000_000  # a request with no event for this long is finished
MAX_OPEN = 50_000  # open requests kept; the oldest is closed beyond this


@dataclass(slots=True)
class InFlight:
    req: Request
    # Its entries in the flow index: the forward tuples it had, and their reverses (a reply's
    # tuple is looked up in backs, so no reversed tuple is built per event).
    tuples: set[Flow] = field(default_factory=set)
    backs: set[Flow] = field(default_factory=set)
    nat_seen: set[tuple[int, str]] = field(default_factory=set)
    # The first packet's destination in each netns it reached, the latest reached last (also
    # which netns it entered: their enter hops are drawn).
    fwd_pkt: dict[int, Flow] = field(default_factory=dict)
    reply_by_netns: dict[int, int] = field(default_factory=dict)  # first reply event per netns
    home_replies: int = 0  # DNS responses seen by the asking netns
    flooded: bool = False  # a copy of its packet was dropped as not for this host
    last_ts: int = 0
    # The first packet's VXLAN crossing as observed on the underlay: leaving, arriving.
    vxlan_out: Event | None = None
    vxlan_in: Event | None = None


class InFlightRequests:
    """Open requests by id, least recently active first, and the UDP tuples closed lately."""

    def __init__(self, idle_ns: int = IDLE_NS, max_open: int = MAX_OPEN) -> None:
        self._idle_ns = idle_ns
        self._max_open = max_open
        self.by_id: OrderedDict[int, InFlight] = OrderedDict()
        self._next_id = 1
        # Tuples of UDP requests closed in the last idle period, oldest first: their late
        # packets (a second query on the socket) start nothing when no conntrack says NEW.
        self._closed_udp: OrderedDict[Flow, int] = OrderedDict()

    def new(self, proto: str, client: Flow, start_ns: int) -> InFlight:
        req = Request(id=self._next_id, proto=proto, client=client, start_ns=start_ns)
        self._next_id += 1
        o = InFlight(req=req, last_ts=start_ns)
        self.by_id[req.id] = o
        return o

    def closed(self, o: InFlight) -> None:
        """o is done: no longer open; a UDP request's tuples are remembered a while."""
        self.by_id.pop(o.req.id, None)
        if o.req.proto == "udp":
            for t in o.tuples:
                self._closed_udp[t] = o.last_ts

    def late_udp(self, pkt: Flow) -> bool:
        """Whether a datagram, either way, belongs to a UDP request closed lately."""
        closed = self._closed_udp
        return pkt in closed or pkt.reversed() in closed

    def idle(self, now_ns: int) -> list[InFlight]:
        """The requests idle since before now_ns - idle, and the oldest beyond the cap, to
        close (still open: closed() ends them). Forgets closed UDP tuples as old."""
        closed = self._closed_udp
        while closed and (now_ns - next(iter(closed.values())) >= self._idle_ns
                          or len(closed) > self._max_open):
            closed.popitem(last=False)
        done: list[InFlight] = []
        for o in self.by_id.values():
            if now_ns - o.last_ts < self._idle_ns and len(self.by_id) - len(done) <= self._max_open:
                break
            done.append(o)
        return done
