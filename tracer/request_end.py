"""When a request ends (its reply reached home, a RST), and its end state from what its events
showed: the backend, the reply time, the status, the mode."""

from __future__ import annotations

from operator import attrgetter

from tracer.dns_join import DnsAnswers
from tracer.drops import FLOODED
from tracer.events import TCP_RST, Point
from tracer.in_flight import InFlight
from tracer.model import Hop, HopKind, Status
from tracer.path_hops import vxlan_hops

BY_TIME = attrgetter("ts_ns")
_ENTERS = frozenset((HopKind.SEND, HopKind.ENTER_NODE, HopKind.ENTER_NETNS, HopKind.BRIDGE))
_PATH_ENTRIES = _ENTERS | {HopKind.DELIVER}
_HOP_DROP, _HOP_LB, _HOP_DNAT = HopKind.DROP, HopKind.LB, HopKind.DNAT
_LEAVING = frozenset((Point.NF_OUT, Point.NF_POST, Point.TX))  # a packet on its way out
_FLOOD_COPY = (HopKind.ENTER_NETNS, HopKind.BRIDGE, HopKind.DROP)  # all a flooded copy shows


def replied(o: InFlight, netns: int, ts: int, tcp_flags: int, point: int,
            answers: DnsAnswers) -> bool:
    """A packet of o in the reply direction: whether it ends o."""
    o.reply_by_netns.setdefault(netns, ts)
    if tcp_flags & TCP_RST:
        o.req.status = Status.REFUSED
        # Closed where the RST arrives, not where it leaves: the kernel frees the SYN it
        # answers only after sending it, and that drop would start a second request
        # (seen where the refusing netns is the client's own: loopback, a node or task
        # connecting to itself).
        return point not in _LEAVING
    # Answered: the reply reached the netns the request started from.
    if not o.req.hops or netns != o.req.hops[0].netns:
        return False
    if o.req.client.dport == 53:
        # Resolvers ask for A and AAAA at once on one socket: the query is answered by
        # the response that carries addresses or an error, else by the second one (or
        # when idle).
        o.home_replies += 1
        if o.home_replies < 2 and not answers.settles(o.req):
            return False
    return True


def finish(o: InFlight) -> None:
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
    if o.vxlan_out is not None or o.vxlan_in is not None:
        req.hops += vxlan_hops(o.vxlan_out, o.vxlan_in)
    req.hops.sort(key=BY_TIME)
    kinds = [h.kind for h in req.hops]
    if req.status == Status.OPEN:
        # A drop is the request's fate only if no answer came back despite it (a late
        # retransmission dropped after the reply is shown as a hop, not as a failure).
        if _HOP_DROP in kinds and not req.reply_ns:
            req.status = Status.DROPPED
        elif not req.backend_addr:
            req.status = Status.UNROUTED
        else:
            req.status = Status.OK if req.reply_ns else Status.NO_REPLY
    req.mode = req.mode or _mode(kinds)  # a resumed request has its connection's


def _mode(kinds: list[HopKind]) -> str:
    """How the request was balanced, from its hops' kinds in time order."""
    if _HOP_LB not in kinds:
        return "direct"
    # A balancer behind a node's entry DNAT (the published port) is the routing mesh;
    # reached straight at its address (in the client's netns or lb_<net>), a VIP.
    lb = kinds.index(_HOP_LB)
    return "mesh" if _HOP_DNAT in kinds[:lb] else "vip"


def _forget_flood_copies(o: InFlight) -> None:
    """An answered request's packet dropped as OTHERHOST in a netns was a copy a bridge
    flooded there (the destination MAC not learnt yet): that netns is not on its path. Not
    for unanswered requests, where such a drop may be why (a wrong MAC)."""
    flooded = {h.netns for h in o.req.hops if h.kind == HopKind.DROP and h.detail == FLOODED}
    flooded -= {h.netns for h in o.req.hops if h.kind not in _FLOOD_COPY}
    if flooded:
        o.req.hops = [h for h in o.req.hops if h.netns not in flooded]
        for netns in flooded:
            o.fwd_pkt.pop(netns, None)
