"""One sentence per hop saying what the kernel did there (talk mode, `replay --step`)."""

from __future__ import annotations

import re

from tracer.dns_search import search_note
from tracer.model import Hop, HopKind, Request, Status
from tracer.sinks.hop_order import causal_hops

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
    HopKind.DELIVER: "PREROUTING",  # entering the backend's netns: its own DNAT comes next
    HopKind.REPLY: "conntrack reply",
    HopKind.DROP: "kfree_skb",
    HopKind.DNS: "DNS answer",
}
_NAT = (HopKind.DNAT, HopKind.SNAT, HopKind.LB)
_NAT_NAME = {HopKind.DNAT: "DNAT", HopKind.SNAT: "SNAT", HopKind.LB: "load balancer's DNAT"}
_SERVICE = re.compile(r"^(?:service )?(?P<name>[^ ()]+)(?: \(fwmark \d+\))?$")


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


def place(hop: Hop) -> str:
    """Where a hop happened, naming its node once: `ingress_sbox on node2`, `node1's host`."""
    where, node = hop.where, hop.node
    if not node:
        return where
    if where == "host":
        return f"{node}'s host"
    first, _, rest = where.partition(" ")
    if first == node and rest:  # names like "node2 ingress_sbox" already carry the node
        return f"{node}'s host" if rest == "host" else f"{rest} on {node}"
    return f"{where} on {node}"


def task_name(r: Request) -> str:
    """The backend's name without the node Docker enrichment appends (`vote.1.mcp6 on node2`)."""
    name = r.backend_name or r.backend_addr
    head, sep, tail = name.rpartition(" on ")
    return head if sep and tail and " " not in tail else name


def service_of_mark(hop: Hop) -> str:
    """The service a MARK hop's detail names ("service vote (fwmark 258)" or "vote")."""
    m = _SERVICE.match(hop.detail)
    return m.group("name") if m else hop.detail


def _chosen(r: Request) -> str:
    deliver = next((h for h in r.hops if h.kind is HopKind.DELIVER), None)
    name = task_name(r) or "a backend"
    return f"{name} on {deliver.node}" if deliver is not None and deliver.node else name


def _scheduler(hop: Hop) -> str:
    words = hop.detail.split()
    if "rr" in words or "round robin" in hop.detail:
        return "round robin"
    return words[-1] if words and words[0] == "IPVS" and len(words) > 1 else "its scheduler"


def narrate(r: Request, index: int) -> str:
    """What the kernel did at hop `index` of request r, counted in causal order."""
    hops = causal_hops(r)
    return narrate_hop(r, hops[index], hops[index - 1] if index else None)


def narrate_hop(r: Request, hop: Hop, prev: Hop | None = None) -> str:
    """What the kernel did at this hop of request r; prev is the hop shown before it."""
    k = hop.kind
    after = hop.after.dst if hop.after else ""
    if k is HopKind.SEND:
        if r.client.dport == 53:
            return (
                f"The client {r.client.saddr} in {place(hop)} asks the DNS server at "
                f"{r.client.dst} (Docker's, in every container) over {r.proto.upper()}."
            )
        tcp = r.proto == "tcp"
        what = "opens a TCP connection" if tcp else f"sends a {r.proto.upper()} datagram"
        return f"The client {r.client.saddr} {what} to {r.client.dst} from {place(hop)}."
    if k is HopKind.ENTER_NODE:
        if hop.node:
            return f"The packet reaches {hop.node} and enters its host network namespace."
        return f"The packet arrives in {hop.where}, the node's own network namespace."
    if k is HopKind.ENTER_NETNS:
        if prev is not None and prev.kind is HopKind.VXLAN:
            return (
                "On the far side of the tunnel, the packet comes out of the VXLAN device in "
                f"{place(hop)}."
            )
        return f"The packet crosses a veth into {place(hop)}."
    if k is HopKind.BRIDGE:
        bridge = hop.detail or "a bridge"
        return f"The bridge {bridge} in {place(hop)} forwards the frame towards the next namespace."
    if k is HopKind.DNAT:
        chain = f"iptables {hop.detail} DNAT" if hop.detail else "iptables DNAT"
        before = hop.before.dst if hop.before else "the destination"
        return f"{chain} in {place(hop)} rewrites the destination {before} -> {after}."
    if k is HopKind.MARK:
        what = (
            f": the mark of service {service_of_mark(hop)}, which picks its load balancer"
            if hop.detail
            else ": the mark selects a load-balancer service"
        )
        return f"{hook_of(r, hop)} in {place(hop)} sets fwmark {mark_text(hop.mark)}{what}."
    if k is HopKind.LB:
        to = f" ({after})." if after else "."
        if is_stand_in(hop):
            how = "iptables round-robin DNAT (IPVS stand-in)"
            return f"{how} in {place(hop)} chose {_chosen(r)}{to}"
        return f"IPVS in {place(hop)}, fwmark {hop.mark}, {_scheduler(hop)}, chose {_chosen(r)}{to}"
    if k is HopKind.SNAT:
        src = hop.after.saddr if hop.after else "its own address"
        return (
            f"Masquerade in {place(hop)} rewrites the source to {src}, "
            "so the reply has to come back through here."
        )
    if k is HopKind.VXLAN:
        route, _, rest = hop.detail.partition(", ")
        src, arrow, dst = route.partition(" -> ")
        if arrow and " " not in src:
            what = f" from {src} to {dst}" + (f": {rest}" if rest else "")
        else:
            what = f" ({hop.detail})" if hop.detail else ""
        return f"The packet is wrapped in VXLAN and crosses the overlay{what}."
    if k is HopKind.DELIVER:
        # The packet enters the backend's netns; a DNAT there (8080 -> 80) may still follow.
        addr = f" ({r.backend_addr})" if r.backend_addr else ""
        return (
            f"The packet reaches {place(hop)}{addr}, {_ms(hop.ts_ns - r.start_ns)} after the "
            "client sent it."
        )
    if k is HopKind.REPLY:
        back = f"The answer is back at the client after {_ms(hop.ts_ns - r.start_ns)}"
        nats = [h for h in r.hops if h.kind in _NAT]
        if 1 <= len(nats) <= 2:
            what = " and the ".join(_NAT_NAME[h.kind] for h in nats)
            return back + f": conntrack reversed the {what} on the way back."
        if nats:
            return back + f": conntrack reversed all {len(nats)} NAT rewrites on the way back."
        return back + "."
    if k is HopKind.DNS:
        return _dns(hop)
    reason = hop.detail or "no reason given"
    return f"The kernel dropped the packet in {place(hop)}: {reason}."


def _dns(hop: Hop) -> str:
    answer, _, picked = hop.detail.partition(": picked ")
    if picked:
        return (
            f"Before connecting, the client in {place(hop)} had asked Docker's DNS: "
            f"{answer}. It connects to {picked}."
        )
    return f"Docker's DNS server (127.0.0.11) answers the query in {place(hop)}: {answer}."


def outcome(r: Request) -> str:
    """The request's outcome in a few words (not a diagnosis: that is a verdict)."""
    name = task_name(r)
    if r.status is Status.OK:
        searched = search_note(r.dns) if r.dns is not None else ""
        return f"answered by {name}, {searched}" if searched else f"answered by {name}"
    if r.status is Status.DROPPED:
        return "dropped"
    if r.status is Status.REFUSED:
        return f"refused by {name}"
    if r.status is Status.NO_REPLY:
        return "no reply"
    if r.status is Status.UNROUTED:
        return "never reached a backend"
    if r.status is Status.DNS_FAILED:
        return f"answered {r.dns.rcode if r.dns else 'with a failure'}"
    if r.status is Status.DNS_SEARCH:
        return f"answered {r.dns.rcode if r.dns else 'without an address'}; the resolver went " \
            "on to the next name of its search list"
    if r.status is Status.DNS_FORWARDED and r.dns is not None:
        return f"answered {r.dns.rcode}, asked upstream for request #{r.dns.forwarded_for}, " \
            "whose verdict covers it"
    return "in flight"


def _ms(ns: int) -> str:
    return f"{ns / 1e6:.3f} ms" if ns >= 1_000_000 else f"{ns / 1e3:.0f} µs"
