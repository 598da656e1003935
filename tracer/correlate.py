"""Events -> requests: join the per-netns events of a connection into one hop-by-hop request.

A connection is followed through NAT by its tuples: every tuple it had in any netns (before
and after each DNAT/SNAT) indexes the request, so the next netns's events, which only know
their own post-NAT view, find it. Replies are the reversed tuples. Works incrementally on a
live stream with bounded memory: idle requests are closed and forgotten."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field
from operator import attrgetter

import numpy as np

from tracer.dns_join import DnsAnswers
from tracer.events import (
    F_BRIDGED,
    F_CT,
    F_ENCAP,
    F_LOCAL,
    F_REPLY_DIR,
    IPS_DST_NAT,
    IPS_SRC_NAT,
    TCP_ACK,
    TCP_FIN,
    TCP_RST,
    TCP_SYN,
    Event,
    Flow,
    Point,
    decode,
)
from tracer.model import VXLAN_IN, VXLAN_OUT, Hop, HopKind, Request, Resumed, Status
from tracer.past_connections import PastConnections

IDLE_NS = 3_000_000_000  # a request with no event for this long is finished
MAX_OPEN = 50_000  # open requests kept; the oldest is closed beyond this

_PROTO = {6: "tcp", 17: "udp"}


@dataclass(slots=True)
class _Open:
    req: Request
    # Its entries in the index: the forward tuples it had, and their reverses (a reply's
    # tuple is looked up in backs, so no reversed tuple is built per event).
    tuples: set[Flow] = field(default_factory=set)
    backs: set[Flow] = field(default_factory=set)
    netns_seen: set[int] = field(default_factory=set)
    nat_seen: set[tuple[int, str]] = field(default_factory=set)
    # The first packet's destination in each netns it reached, the latest reached last.
    fwd_pkt: dict[int, Flow] = field(default_factory=dict)
    reply_by_netns: dict[int, int] = field(default_factory=dict)  # first reply event per netns
    home_replies: int = 0  # DNS responses seen by the asking netns
    flooded: bool = False  # a copy of its packet was dropped as not for this host
    last_ts: int = 0
    # The first packet's VXLAN crossing as observed on the underlay: leaving, arriving.
    vxlan_out: Event | None = None
    vxlan_in: Event | None = None


class Correlator:
    """Feed decoded events in arrival order; get back the requests that completed."""

    def __init__(self, drop_reasons: tuple[str, ...] = (), idle_ns: int = IDLE_NS,
                 max_open: int = MAX_OPEN) -> None:
        self._drop_reasons = drop_reasons
        self._idle_ns = idle_ns
        self._max_open = max_open
        self._open: OrderedDict[int, _Open] = OrderedDict()  # by request id, oldest first
        # proto -> tuple -> (request, is the reply direction): every forward tuple a request
        # had, and its reverse, so a lookup never builds a reversed tuple. One dict per
        # protocol: a lookup needs no (proto, tuple) key built per event.
        self._index: dict[int, dict[Flow, tuple[_Open, bool]]] = {6: {}, 17: {}}
        self._next_id = 1
        self.now_ns = 0
        # The last DNS answer seen per netns: joins the connection that follows it.
        self._answers = DnsAnswers()
        # Tuples of UDP requests closed in the last idle period, oldest first: their late
        # packets (a second query on the socket) start nothing when no conntrack says NEW.
        self._closed_udp: OrderedDict[Flow, int] = OrderedDict()
        self._past = PastConnections()

    @property
    def open_requests(self) -> list[Request]:
        return [o.req for o in self._open.values()]

    def feed_array(self, records: np.ndarray) -> list[Request]:
        if len(records):
            self.now_ns = max(self.now_ns, int(records["ts_ns"].max()))
        # A TCP segment without SYN, FIN or RST changes no request (a request's path, NAT and
        # reply come from its SYN and SYN-ACK): not even decoded. Drops and IPVS events count.
        keep = (records["proto"] != 6) | (records["tcp_flags"] & _TCP_STATE != 0) | \
            np.isin(records["point"], _ALWAYS_KEPT)
        return self._feed(decode(records if keep.all() else records[keep]))

    def feed(self, events: Iterable[Event]) -> list[Request]:
        events = list(events)
        if events:
            self.now_ns = max(self.now_ns, max(e.ts_ns for e in events))
        return self._feed(events)

    def _feed(self, events: list[Event]) -> list[Request]:
        """Events of a batch whose latest time is already in now_ns."""
        done: list[Request] = []
        for e in events:
            finished = self._event(e)
            if finished is not None:
                done.append(self._close(finished))
        done.extend(self.expire(self.now_ns))
        return done

    def expire(self, now_ns: int) -> list[Request]:
        """Close requests idle since before now_ns - idle, and the oldest beyond the cap."""
        closed = self._closed_udp
        while closed and (now_ns - next(iter(closed.values())) >= self._idle_ns
                          or len(closed) > self._max_open):
            closed.popitem(last=False)
        done = []
        while self._open:
            o = next(iter(self._open.values()))
            if now_ns - o.last_ts < self._idle_ns and len(self._open) <= self._max_open:
                break
            done.append(self._close(o))
        return done

    def mark_open(self, note: str) -> None:
        """Note on every request in flight that it may be incomplete (events were lost)."""
        for o in self._open.values():
            o.req.missing.append(note)

    def flush(self) -> list[Request]:
        """Close everything still open (end of a replay, end of a trace)."""
        return [self._close(o) for o in list(self._open.values())]

    # -- one event ---------------------------------------------------------------------

    def _event(self, e: Event) -> _Open | None:
        ts, _, netns, _, _, _, _, _, point, proto, tcp_flags, ctinfo, flags, pkt, orig, _ = e
        index = self._index.get(proto)
        if index is None:
            return None  # neither TCP nor UDP
        if point == _DNS:
            self._answers.add(e)  # kept per netns: the query may be over, the next one not
            return None
        if point == _VXLAN_OUT or point == _VXLAN_IN:  # noqa: SIM109 (an IntEnum hashes in Python)
            self._vxlan(e, index)
            return None
        # The request this event belongs to, and whether it travels in the reply direction.
        o: _Open | None = None
        reply = bool(flags & F_REPLY_DIR)
        if flags & F_CT:
            hit = index.get(orig)  # type: ignore[arg-type]
            if hit is not None and not hit[1]:
                o = hit[0]
        if o is None:
            hit = index.get(pkt)
            if hit is not None:
                o, reply = hit
            elif reply or not _starts_connection(point, proto, tcp_flags, flags, ctinfo, pkt) \
                    or self._late_udp(e):
                if point == _DROP and proto == 6:
                    self._cut(e)
                return None
            else:
                o = self._new(e, index)
        o.last_ts = ts
        self._open.move_to_end(o.req.id)
        if point == _DROP:
            self._drop(o, e)
            return None
        if point == _LB:
            self._lb(o, e, index)
            return None
        if reply:
            return self._reply(o, netns, ts, tcp_flags, point)
        return self._forward(o, e, index)

    def _cut(self, e: Event) -> None:
        """A TCP packet dropped in the middle of a connection no open request holds: a
        request of its own when the connection is a remembered one, or when nothing in that
        netns holds the connection any more (NO_SOCKET: a balancer that forgot it)."""
        if e.tcp_flags & TCP_SYN:
            return
        reason = self.drop_reason(e.aux)
        past = self._past.find(e.pkt)
        # A VXLAN packet of a known connection dropped on the underlay: its size is why.
        encap = past is not None and e.flags & F_ENCAP and reason not in BENIGN_DROPS
        if not encap and (reason not in CUT_DROPS or (past is None and reason != NO_SOCKET)):
            return
        req = Request(id=self._next_id, proto="tcp", client=e.pkt, start_ns=e.ts_ns,
                      resumed=Resumed(0, 0))
        self._next_id += 1
        o = _Open(req=req, last_ts=e.ts_ns)
        self._open[req.id] = o
        if past is None:
            self._register(o, self._index[6], e.pkt)
        else:
            req.client = Flow(*past.client)
            req.backend_addr, req.mode = past.backend_addr, past.mode
            req.resumed = Resumed(past.id, past.opened_ns)
            self._past.forget(past)
            for t in past.tuples:
                self._register(o, self._index[6], Flow(*t))
        self._drop(o, e)

    def _late_udp(self, e: Event) -> bool:
        """A datagram, either way, of a UDP request closed lately (bcc gives no conntrack
        state at receive to tell it from a new one)."""
        closed = self._closed_udp
        return e.proto == 17 and not e.flags & F_CT and (
            e.pkt in closed or e.pkt.reversed() in closed)

    def _new(self, e: Event, index: dict[Flow, tuple[_Open, bool]]) -> _Open:
        client = e.orig if e.flags & F_CT and e.orig is not None else e.pkt
        req = Request(id=self._next_id, proto=_PROTO[e.proto], client=client, start_ns=e.ts_ns)
        self._next_id += 1
        o = _Open(req=req, last_ts=e.ts_ns)
        self._open[req.id] = o
        self._register(o, index, client)
        return o

    @staticmethod
    def _register(o: _Open, index: dict[Flow, tuple[_Open, bool]], t: Flow) -> None:
        if t not in o.tuples:
            back = t.reversed()
            o.tuples.add(t)
            o.backs.add(back)
            index[t] = (o, False)
            index.setdefault(back, (o, True))

    def _forward(self, o: _Open, e: Event, index: dict[Flow, tuple[_Open, bool]]) -> _Open | None:
        ts, _, netns, ifindex, mark, _, _, ct_status, point, proto, tcp_flags, _, flags, pkt, \
            orig, reply = e
        # Checked here, not in _register: most events repeat a known tuple.
        if pkt not in o.tuples:
            self._register(o, index, pkt)
        if flags & F_CT and reply is not None and reply not in o.backs:
            self._register(o, index, reply.reversed())
        if tcp_flags & TCP_RST:
            return o
        if not tcp_flags & TCP_SYN and proto == 6:
            return None
        # The path is drawn from the first packet (SYN, or the first datagram).
        req, where = o.req, None
        if netns not in o.netns_seen:
            o.netns_seen.add(netns)
            where = f"netns:{netns}"
            kind = _enter_kind(point, flags, ct_status, not req.hops)
            req.hops.append(Hop(kind, ts, netns, where, ifindex))
        if mark and (netns, "mark") not in o.nat_seen:
            o.nat_seen.add((netns, "mark"))
            req.hops.append(Hop(HopKind.MARK, ts, netns, where or f"netns:{netns}", ifindex,
                                mark=mark))
        if flags & F_CT and orig is not None and reply is not None:
            self._nat_hops(o, e, orig, reply)
        fwd_pkt = o.fwd_pkt
        fwd_pkt.pop(netns, None)
        fwd_pkt[netns] = pkt
        return None

    @staticmethod
    def _nat_hops(o: _Open, e: Event, orig: Flow, reply: Flow) -> None:
        ts, _, netns, ifindex, mark, _, _, ct_status, point, _, _, _, _, pkt, _, _ = e
        o_saddr, o_sport, o_daddr, o_dport = orig
        r_saddr, r_sport, r_daddr, r_dport = reply
        _, _, p_daddr, p_dport = pkt
        # The forward tuple once this netns's NAT applied is the reply tuple reversed.
        # Tuples differ only where NAT (iptables or IPVS with conntrack) rewrote the flow.
        if (r_saddr != o_daddr or r_sport != o_dport) \
                and p_daddr == r_saddr and p_dport == r_sport \
                and (netns, "dnat") not in o.nat_seen:
            o.nat_seen.add((netns, "dnat"))
            # A destination chosen where a fwmark selects a service is a load-balancer pick.
            kind = HopKind.LB if mark else HopKind.DNAT
            o.req.hops.append(Hop(kind, ts, netns, f"netns:{netns}", ifindex,
                                  mark=mark, before=orig,
                                  after=Flow(o_saddr, o_sport, r_saddr, r_sport)))
        if ct_status & IPS_SRC_NAT and point in _SNAT_POINTS \
                and (r_daddr != o_saddr or r_dport != o_sport) \
                and (netns, "snat") not in o.nat_seen:
            o.nat_seen.add((netns, "snat"))
            o.req.hops.append(Hop(HopKind.SNAT, ts, netns, f"netns:{netns}", ifindex,
                                  mark=mark, before=Flow(o_saddr, o_sport, r_saddr, r_sport),
                                  after=reply.reversed()))

    def _lb(self, o: _Open, e: Event, index: dict[Flow, tuple[_Open, bool]]) -> None:
        """IPVS's own decision (bcc backend): the real server for this client tuple."""
        assert e.reply is not None
        chosen = Flow(e.pkt.saddr, e.pkt.sport, e.reply.saddr, e.reply.sport)
        self._register(o, index, chosen)
        o.nat_seen.add((e.netns, "dnat"))
        # The first bytes of the scheduler's name, up to its NUL ("rr", "wrr", "lc").
        sched = e.aux.to_bytes(4, "little").split(b"\0")[0].decode(errors="replace")
        service = f"fwmark {e.mark}" if e.mark else e.pkt.dst
        o.req.hops.append(Hop(HopKind.LB, e.ts_ns, e.netns, f"netns:{e.netns}", mark=e.mark,
                              before=e.pkt, after=chosen, detail=f"IPVS {service} {sched}"))

    def _reply(self, o: _Open, netns: int, ts: int, tcp_flags: int, point: int
               ) -> _Open | None:
        o.reply_by_netns.setdefault(netns, ts)
        if tcp_flags & TCP_RST:
            o.req.status = Status.REFUSED
            # Closed where the RST arrives, not where it leaves: the kernel frees the SYN it
            # answers only after sending it, and that drop would start a second request
            # (seen where the refusing netns is the client's own: loopback, a node or task
            # connecting to itself).
            return None if point in _LEAVING else o
        # Answered: the reply reached the netns the request started from.
        if not o.req.hops or netns != o.req.hops[0].netns:
            return None
        if o.req.client.dport == 53:
            # Resolvers ask for A and AAAA at once on one socket: the query is answered by
            # the response that carries addresses or an error, else by the second one (or
            # when idle).
            o.home_replies += 1
            if o.home_replies < 2 and not self._answers.settles(o.req):
                return None
        return o

    def _vxlan(self, e: Event, index: dict[Flow, tuple[_Open, bool]]) -> None:
        """The overlay crossing of a request's first packet, joined by its inner tuple."""
        hit = index.get(e.orig)  # type: ignore[arg-type]
        if hit is None or hit[1] or not _first_packet(e):
            return
        o = hit[0]
        o.last_ts = max(o.last_ts, e.ts_ns)
        if e.point == Point.VXLAN_OUT:
            o.vxlan_out = o.vxlan_out or e
        elif o.vxlan_in is None and (o.vxlan_out is None or _same_crossing(o.vxlan_out, e)):
            o.vxlan_in = e

    def _drop(self, o: _Open, e: Event) -> None:
        reason = self.drop_reason(e.aux)
        if reason in BENIGN_DROPS:
            return
        if e.flags & F_ENCAP:
            detail = f"{reason}{VXLAN_SIZE}{e.ct_status} bytes"
            # Each retransmission of a full-size packet dies the same way: one hop says it.
            if not any(h.detail == detail and h.netns == e.netns for h in o.req.hops):
                # before: the outer (underlay) tuple of the VXLAN packet that carried it.
                o.req.hops.append(Hop(HopKind.DROP, e.ts_ns, e.netns, f"netns:{e.netns}",
                                      e.ifindex, before=e.orig, detail=detail))
            return
        o.req.hops.append(Hop(HopKind.DROP, e.ts_ns, e.netns, f"netns:{e.netns}", e.ifindex,
                              detail=reason))
        o.flooded |= reason == FLOODED

    def drop_reason(self, code: int) -> str:
        return self._drop_reasons[code] if code < len(self._drop_reasons) else f"reason {code}"

    # -- completion --------------------------------------------------------------------

    def _close(self, o: _Open) -> Request:
        req = o.req
        self._open.pop(req.id, None)
        proto = 6 if req.proto == "tcp" else 17
        if proto == 17:
            for t in o.tuples:
                self._closed_udp[t] = o.last_ts
        index = self._index[proto]
        for keys in (o.tuples, o.backs):
            for key in keys:
                hit = index.get(key)
                if hit is not None and hit[0] is o:
                    del index[key]
        _finish(o)
        if proto == 6 and req.status == Status.OK:
            self._past.remember(req, o.tuples)
        if self._answers.join(req, o.last_ts):
            req.hops.sort(key=_BY_TIME)
        return req


def _finish(o: _Open) -> None:
    """A request's end state from what its events showed: backend, reply, status, mode."""
    req = o.req
    req.end_ns = o.last_ts
    if o.flooded and o.reply_by_netns:
        _forget_flood_copies(o)
    # The backend is where the first packet ended up: the last netns it entered.
    last_netns = next(reversed(o.fwd_pkt), 0)
    for i in range(len(req.hops) - 1, -1, -1):
        h = req.hops[i]
        if h.netns == last_netns and h.kind in _ENTERS:
            # Served in the sender's own netns (Docker's embedded DNS) only if answered.
            if i > 0 or o.reply_by_netns:
                if i > 0:
                    req.hops[i] = Hop(HopKind.DELIVER, h.ts_ns, h.netns, h.where, h.ifindex)
                req.backend_addr = o.fwd_pkt[last_netns].dst
            break
    replies = o.reply_by_netns
    if replies:
        # Reply time is measured where the request started (the client side) when we
        # see it there, else at the earliest netns of the path that saw the reply.
        for h in req.hops:
            if h.kind in _PATH_ENTRIES and h.netns in replies:
                netns = h.netns
                break
        else:
            netns = next(iter(replies))
        req.reply_ns = replies[netns]
        req.hops.append(Hop(HopKind.REPLY, req.reply_ns, netns, f"netns:{netns}"))
    if req.status == Status.OPEN:
        # A drop is the request's fate only if no answer came back despite it (a late
        # retransmission dropped after the reply is shown as a hop, not as a failure).
        dropped = _HOP_DROP in [h.kind for h in req.hops]
        if dropped and not req.reply_ns:
            req.status = Status.DROPPED
        elif not req.backend_addr:
            req.status = Status.UNROUTED
        else:
            req.status = Status.OK if req.reply_ns else Status.NO_REPLY
    if o.vxlan_out is not None or o.vxlan_in is not None:
        req.hops += _vxlan_hops(o.vxlan_out, o.vxlan_in)
    req.hops.sort(key=_BY_TIME)
    req.mode = req.mode or _mode(req)  # a resumed request has its connection's


_TCP_STATE = TCP_SYN | TCP_FIN | TCP_RST
# Members as plain names: reading an enum member off its class costs a lookup per event.
_DNS, _DROP, _LB = Point.DNS, Point.DROP, Point.LB
_VXLAN_OUT, _VXLAN_IN = Point.VXLAN_OUT, Point.VXLAN_IN
_SNAT_POINTS = frozenset((Point.NF_POST, Point.NAT, Point.TX))  # after SNAT was applied
_BY_TIME = attrgetter("ts_ns")
_ALWAYS_KEPT = np.array([Point.DROP, Point.LB], dtype=np.uint8)
_ENTERS = frozenset((HopKind.SEND, HopKind.ENTER_NODE, HopKind.ENTER_NETNS, HopKind.BRIDGE))
_PATH_ENTRIES = _ENTERS | {HopKind.DELIVER}
_HOP_DROP, _HOP_LB, _HOP_DNAT = HopKind.DROP, HopKind.LB, HopKind.DNAT
_LOCAL_POINTS = frozenset((Point.NF_OUT, Point.TX))  # a socket of this netns sent it
_LEAVING = frozenset((Point.NF_OUT, Point.NF_POST, Point.TX))  # a packet on its way out
_FLOOD_COPY = (HopKind.ENTER_NETNS, HopKind.BRIDGE, HopKind.DROP)  # all a flooded copy shows


def _starts_connection(point: int, proto: int, tcp_flags: int, flags: int, ctinfo: int,
                       pkt: Flow) -> bool:
    if point == _LB:
        return True  # IPVS scheduling a local client's connection comes before any packet
    if proto == 6:
        return bool(tcp_flags & TCP_SYN) and not (tcp_flags & TCP_ACK)
    if pkt[1] == 53:  # the source port
        return False  # a DNS answer (a late one, after its query completed) starts nothing
    return not flags & F_CT or ctinfo == 2  # IP_CT_NEW


def _first_packet(e: Event) -> bool:
    """The packet that draws a request's path: a SYN (not a SYN-ACK) or a datagram."""
    return e.proto != 6 or bool(e.tcp_flags & TCP_SYN and not e.tcp_flags & TCP_ACK)


def _same_crossing(out: Event, arrived: Event) -> bool:
    return (out.pkt.saddr, out.pkt.daddr, out.aux, out.ct) == \
        (arrived.pkt.saddr, arrived.pkt.daddr, arrived.aux, arrived.ct)


def _vxlan_hops(out: Event | None, arrived: Event | None) -> list[Hop]:
    """The observed crossing: a hop where the packet left (detail "VNI n out") and one where
    it arrived ("VNI n in"); before = the outer tuple, after = the inner one. Enrichment
    words them as one hop."""
    return [Hop(HopKind.VXLAN, e.ts_ns, e.netns, f"netns:{e.netns}", e.ifindex, before=e.pkt,
                after=e.orig, detail=f"VNI {e.aux} {side}")
            for e, side in ((out, VXLAN_OUT), (arrived, VXLAN_IN)) if e is not None]


def _enter_kind(point: int, flags: int, ct_status: int, first: bool) -> HopKind:
    if first:
        local = point in _LOCAL_POINTS or flags & F_LOCAL
        return HopKind.SEND if local else HopKind.ENTER_NODE
    if flags & F_BRIDGED and not (ct_status & (IPS_DST_NAT | IPS_SRC_NAT)):
        return HopKind.BRIDGE
    return HopKind.ENTER_NETNS


def _mode(req: Request) -> str:
    kinds = [h.kind for h in req.hops]
    if _HOP_LB not in kinds:
        return "direct"
    # A balancer behind a node's entry DNAT (the published port) is the routing mesh;
    # reached straight at its address (in the client's netns or lb_<net>), a VIP.
    lb = kinds.index(_HOP_LB)
    return "mesh" if _HOP_DNAT in kinds[:lb] else "vip"


def _forget_flood_copies(o: _Open) -> None:
    """An answered request's packet dropped as OTHERHOST in a netns was a copy a bridge
    flooded there (the destination MAC not learnt yet): that netns is not on its path. Not
    for unanswered requests, where such a drop may be why (a wrong MAC)."""
    flooded = {h.netns for h in o.req.hops if h.kind == HopKind.DROP and h.detail == FLOODED}
    flooded -= {h.netns for h in o.req.hops if h.kind not in _FLOOD_COPY}
    if flooded:
        o.req.hops = [h for h in o.req.hops if h.netns not in flooded]
        for netns in flooded:
            o.fwd_pkt.pop(netns, None)


# How a drop hop of a VXLAN packet words its size: "<reason>, a VXLAN packet of 1500 bytes".
VXLAN_SIZE = ", a VXLAN packet of "
# Frees that end a socket's life normally, not a packet lost on its way.
BENIGN_DROPS = frozenset({"QUEUE_PURGE", "SOCKET_CLOSE"})
# Nothing in the netns holds the packet's connection: delivered to a stack without a socket.
NO_SOCKET = "NO_SOCKET"
# Drops that cut a connection in its middle (the kernel frees many of its packets with no
# reason given, NOT_SPECIFIED, and TCP drops its own duplicates: neither is a failure).
CUT_DROPS = frozenset({NO_SOCKET, "NETFILTER_DROP"})
# A frame for another MAC: how a bridge's flooded copy ends in the netns it was not for.
FLOODED = "OTHERHOST"
