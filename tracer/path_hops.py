"""A request's path, drawn from its first packet (SYN, or first datagram): the netns it
entered, the marks and rewrites (DNAT, SNAT, a balancer's pick) in each, its overlay crossing."""

from __future__ import annotations

from tracer.events import (
    F_BRIDGED,
    F_CT,
    F_LOCAL,
    IPS_DST_NAT,
    IPS_SRC_NAT,
    TCP_ACK,
    TCP_RST,
    TCP_SYN,
    Event,
    EventRow,
    Flow,
    Point,
)
from tracer.flow_index import FlowIndex, Index
from tracer.in_flight import InFlight
from tracer.model import VXLAN_IN, VXLAN_OUT, Hop, HopKind

_SNAT_POINTS = frozenset((Point.NF_POST, Point.NAT, Point.TX))  # after SNAT was applied
_LOCAL_POINTS = frozenset((Point.NF_OUT, Point.TX))  # a socket of this netns sent it
_register = FlowIndex.register


def forward(o: InFlight, e: EventRow, index: Index) -> bool:
    """A packet of o in the forward direction: its tuples, and the hops of a first packet.
    Whether it ends o (a RST)."""
    ts, _, netns, ifindex, mark, _, _, ct_status, point, proto, tcp_flags, _, flags, pkt, \
        orig, reply = e
    # Checked here, not in register: most events repeat a known tuple.
    if pkt not in o.tuples:
        _register(o, index, pkt)
    if flags & F_CT and reply is not None and reply not in o.backs:
        _register(o, index, reply.reversed())
    if tcp_flags & TCP_RST:
        return True
    if not tcp_flags & TCP_SYN and proto == 6:
        return False
    hops, where = o.req.hops, f"netns:{netns}"
    fwd_pkt = o.fwd_pkt
    if netns not in fwd_pkt:
        kind = _enter_kind(point, flags, ct_status, not hops)
        hops.append(Hop(kind, ts, netns, where, ifindex))
    if mark and (netns, "mark") not in o.nat_seen:
        o.nat_seen.add((netns, "mark"))
        hops.append(Hop(HopKind.MARK, ts, netns, where, ifindex, mark))
    if flags & F_CT and orig is not None and reply is not None:
        _nat_hops(o, ts, netns, where, ifindex, mark, ct_status, point, pkt, orig, reply)
    fwd_pkt.pop(netns, None)
    fwd_pkt[netns] = pkt
    return False


def _nat_hops(o: InFlight, ts: int, netns: int, where: str, ifindex: int, mark: int,
              ct_status: int, point: int, pkt: Flow, orig: Flow, reply: Flow) -> None:
    """The rewrites that this netns's conntrack entry shows, as hops."""
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
        o.req.hops.append(Hop(kind, ts, netns, where, ifindex, mark, orig,
                              Flow(o_saddr, o_sport, r_saddr, r_sport)))
    if ct_status & IPS_SRC_NAT and point in _SNAT_POINTS \
            and (r_daddr != o_saddr or r_dport != o_sport) \
            and (netns, "snat") not in o.nat_seen:
        o.nat_seen.add((netns, "snat"))
        o.req.hops.append(Hop(HopKind.SNAT, ts, netns, where, ifindex, mark,
                              Flow(o_saddr, o_sport, r_saddr, r_sport), reply.reversed()))


def _enter_kind(point: int, flags: int, ct_status: int, first: bool) -> HopKind:
    if first:
        local = point in _LOCAL_POINTS or flags & F_LOCAL
        return HopKind.SEND if local else HopKind.ENTER_NODE
    if flags & F_BRIDGED and not (ct_status & (IPS_DST_NAT | IPS_SRC_NAT)):
        return HopKind.BRIDGE
    return HopKind.ENTER_NETNS


def balanced(o: InFlight, e: Event, index: Index) -> None:
    """IPVS's own decision (bcc backend): the real server for this client tuple."""
    assert e.reply is not None
    chosen = Flow(e.pkt.saddr, e.pkt.sport, e.reply.saddr, e.reply.sport)
    _register(o, index, chosen)
    o.nat_seen.add((e.netns, "dnat"))
    # The first bytes of the scheduler's name, up to its NUL ("rr", "wrr", "lc").
    sched = e.aux.to_bytes(4, "little").split(b"\0")[0].decode(errors="replace")
    service = f"fwmark {e.mark}" if e.mark else e.pkt.dst
    o.req.hops.append(Hop(HopKind.LB, e.ts_ns, e.netns, f"netns:{e.netns}", mark=e.mark,
                          before=e.pkt, after=chosen, detail=f"IPVS {service} {sched}"))


def crossed(index: Index, e: Event) -> None:
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


def _first_packet(e: Event) -> bool:
    """The packet that draws a request's path: a SYN (not a SYN-ACK) or a datagram."""
    return e.proto != 6 or bool(e.tcp_flags & TCP_SYN and not e.tcp_flags & TCP_ACK)


def _same_crossing(out: Event, arrived: Event) -> bool:
    return (out.pkt.saddr, out.pkt.daddr, out.aux, out.ct) == \
        (arrived.pkt.saddr, arrived.pkt.daddr, arrived.aux, arrived.ct)


def vxlan_hops(out: Event | None, arrived: Event | None) -> list[Hop]:
    """The observed crossing: a hop where the packet left (detail "VNI n out") and one where
    it arrived ("VNI n in"); before = the outer tuple, after = the inner one. Enrichment
    words them as one hop."""
    return [Hop(HopKind.VXLAN, e.ts_ns, e.netns, f"netns:{e.netns}", e.ifindex, before=e.pkt,
                after=e.orig, detail=f"VNI {e.aux} {side}")
            for e, side in ((out, VXLAN_OUT), (arrived, VXLAN_IN)) if e is not None]
