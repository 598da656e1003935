"""One sentence per hop saying what the kernel did there (talk mode, hop details)."""

from __future__ import annotations

from tracer.model import Hop, HopKind, Request, Status

# Where in netfilter a hop kind is decided; the client's own netns sees locally made packets.
_HOOK = {
    HopKind.SEND: "OUTPUT",
    HopKind.ENTER_NODE: "PREROUTING",
    HopKind.ENTER_NETNS: "PREROUTING",
    HopKind.BRIDGE: "FORWARD",
    HopKind.DNAT: "nat PREROUTING",
    HopKind.MARK: "mangle PREROUTING",
    HopKind.LB: "IPVS",
    HopKind.SNAT: "nat POSTROUTING",
    HopKind.VXLAN: "udp 4789",
    HopKind.DELIVER: "INPUT",
    HopKind.REPLY: "conntrack reply",
    HopKind.DROP: "kfree_skb",
    HopKind.DNS: "DNS answer",
}


def is_stand_in(hop: Hop) -> bool:
    return "stand-in" in hop.detail.lower()


def hook_of(r: Request, hop: Hop) -> str:
    """The netfilter hook (or kernel point) a hop belongs to, as shown next to it."""
    # Packets a netns makes itself pass OUTPUT, not PREROUTING: the client's own netns.
    first = r.hops[0] if r.hops else None
    local = (
        first is not None
        and first.kind is HopKind.SEND
        and hop.where == first.where
        and hop.kind is not HopKind.REPLY
    )
    if hop.kind is HopKind.LB and is_stand_in(hop):
        return "nat OUTPUT" if local else "nat PREROUTING"
    if local and hop.kind in (HopKind.DNAT, HopKind.MARK):
        return _HOOK[hop.kind].split()[0] + " OUTPUT"
    return _HOOK[hop.kind]


def mark_text(mark: int) -> str:
    return f"{mark:#x} ({mark})"


def _in(hop: Hop) -> str:
    return f"{hop.where} on {hop.node}" if hop.node else hop.where


def _chosen(r: Request) -> str:
    deliver = next((h for h in r.hops if h.kind is HopKind.DELIVER), None)
    name = r.backend_name or r.backend_addr or "a backend"
    if deliver is not None and deliver.node:
        return f"{name} on {deliver.node}"
    return name


def _scheduler(hop: Hop) -> str:
    words = hop.detail.split()
    if "rr" in words or "round robin" in hop.detail:
        return "round robin"
    return words[-1] if words and words[0] == "IPVS" and len(words) > 1 else "its scheduler"


def narrate(r: Request, index: int) -> str:
    """What the kernel did at hop `index` of request r, in one sentence."""
    hop = r.hops[index]
    k = hop.kind
    after = hop.after.dst if hop.after else ""
    if k is HopKind.SEND:
        return (
            f"The client {r.client.saddr} opens a {r.proto.upper()} connection to "
            f"{r.client.dst} from {_in(hop)}."
            + (f" ({hop.detail})" if hop.detail else "")
        )
    if k is HopKind.ENTER_NODE:
        return f"The packet arrives in {_in(hop)}, the node's own network namespace."
    if k is HopKind.ENTER_NETNS:
        return f"The packet crosses a veth into {_in(hop)}."
    if k is HopKind.BRIDGE:
        bridge = hop.detail or "a bridge"
        return f"The bridge {bridge} in {_in(hop)} forwards the frame towards the next namespace."
    if k is HopKind.DNAT:
        chain = f"iptables {hop.detail} DNAT" if hop.detail else "iptables DNAT"
        before = hop.before.dst if hop.before else "the destination"
        return f"{chain} in {_in(hop)} rewrites the destination {before} -> {after}."
    if k is HopKind.MARK:
        what = (
            f", the mark of service {hop.detail}'s load balancer"
            if hop.detail
            else ": the mark selects a load-balancer service"
        )
        return f"{hook_of(r, hop)} in {_in(hop)} sets fwmark {mark_text(hop.mark)}{what}."
    if k is HopKind.LB:
        if is_stand_in(hop):
            return (
                f"iptables round-robin DNAT (IPVS stand-in) in {_in(hop)} chose {_chosen(r)}"
                + (f" ({after})." if after else ".")
            )
        return (
            f"IPVS in {_in(hop)}, fwmark {hop.mark}, {_scheduler(hop)}, chose {_chosen(r)}"
            + (f" ({after})." if after else ".")
        )
    if k is HopKind.SNAT:
        src = hop.after.saddr if hop.after else "its own address"
        return (
            f"Masquerade in {_in(hop)} rewrites the source to {src}, "
            "so the reply has to come back through here."
        )
    if k is HopKind.VXLAN:
        what = f" ({hop.detail})" if hop.detail else ""
        return f"The packet is wrapped in VXLAN and crosses the overlay{what}."
    if k is HopKind.DELIVER:
        where = f"{r.backend_name} ({r.backend_addr})" if r.backend_addr else _in(hop)
        return f"{where} receives it, {_ms(hop.ts_ns - r.start_ns)} after the client sent it."
    if k is HopKind.REPLY:
        return (
            f"The answer is back at the client after {_ms(hop.ts_ns - r.start_ns)}: "
            "conntrack undid every NAT on the way back."
        )
    reason = hop.detail or "no reason given"
    return f"The kernel dropped the packet in {_in(hop)}: {reason}."


def verdict(r: Request) -> str:
    """The request's outcome in a few words."""
    if r.status is Status.OK:
        return f"answered by {r.backend_name or r.backend_addr}"
    if r.status is Status.DROPPED:
        return "dropped"
    if r.status is Status.REFUSED:
        return f"refused by {r.backend_name or r.backend_addr}"
    if r.status is Status.NO_REPLY:
        return "no reply"
    if r.status is Status.UNROUTED:
        return "never reached a backend"
    return "in flight"


def _ms(ns: int) -> str:
    return f"{ns / 1e6:.3f} ms" if ns >= 1_000_000 else f"{ns / 1e3:.0f} µs"
