"""Drops as hops of a request: which drops tell of a failure, which of a normal end, and when a
drop in the middle of a connection no open request holds is a request of its own."""

from __future__ import annotations

from tracer.events import F_ENCAP, Event
from tracer.in_flight import InFlight
from tracer.model import Hop, HopKind
from tracer.past_connections import Past

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


def reason_name(reasons: tuple[str, ...], code: int) -> str:
    """The kernel's name of drop reason code, as the trace's source listed them."""
    return reasons[code] if code < len(reasons) else f"reason {code}"


def cuts(e: Event, reason: str, past: Past | None) -> bool:
    """Whether a TCP packet dropped in the middle of a connection no open request holds is a
    request of its own: when the connection is a remembered one (past), or when nothing in
    that netns holds the connection any more (NO_SOCKET: a balancer that forgot it)."""
    # A VXLAN packet of a known connection dropped on the underlay: its size is why.
    encap = past is not None and e.flags & F_ENCAP and reason not in BENIGN_DROPS
    return bool(encap) or (reason in CUT_DROPS and (past is not None or reason == NO_SOCKET))


def dropped(o: InFlight, e: Event, reason: str) -> None:
    """The drop as a hop of o, unless it ended a socket's life normally."""
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
