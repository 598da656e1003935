"""Put names on a correlated request: netns, backend task/container, the service of a mark."""

from __future__ import annotations

from dataclasses import replace

from tracer.enrich.names import Names, NetnsName
from tracer.model import VXLAN_IN, VXLAN_OUT, Hop, HopKind, Request

# Docker's embedded DNS server in every container's netns.
DOCKER_DNS = "127.0.0.11"


def annotate(req: Request, names: Names, agents: dict[str, bool] | None = None) -> Request:
    """Fill hop.where, hop.node, mark services and the backend's name, as of each hop's time.

    `agents`, when tracing through agents: node -> whether its agent is streaming now; it
    tells a packet never seen arriving from one whose receiver was not traced."""
    hops = []
    hosts: set[int] = set()  # netns that are a node's own (underlay) netns
    seen: dict[int, NetnsName | None] = {}  # a request's hops share a few netns
    for h in req.hops:
        if h.netns in seen:
            ns = seen[h.netns]
        else:
            ns = seen[h.netns] = names.netns(h.netns, h.ts_ns)
        if ns is not None and ns.kind == "host":
            hosts.add(h.netns)
        kind, detail = h.kind, h.detail
        if kind == HopKind.ENTER_NETNS and ns is not None and ns.kind == "host":
            kind = HopKind.ENTER_NODE
        if kind == HopKind.MARK and not detail:
            svc = names.fwmark(h.netns, h.mark, h.ts_ns)
            if svc:
                detail = f"service {svc} (fwmark {h.mark})"
        # Built directly: dataclasses.replace() was most of this function's cost live.
        hops.append(Hop(kind, h.ts_ns, h.netns, ns.label if ns else h.where, h.ifindex, h.mark,
                        h.before, h.after, detail, (ns.node or "") if ns else ""))
    # The sender is known when its own netns was traced (a send, or a VIP balancer in it).
    first = next((h for h in hops if h.kind != HopKind.DNS), None)
    if first is not None and first.kind in (HopKind.SEND, HopKind.LB) \
            and not first.where.startswith("netns:"):
        req.client_name = first.where
    deliver = next((h for h in hops if h.kind == HopKind.DELIVER), None)
    addr = None
    if req.backend_addr:
        ip = req.backend_addr.rsplit(":", 1)[0]
        addr = names.addr(ip, deliver.ts_ns if deliver else req.start_ns)
        if ip == DOCKER_DNS:
            req.backend_name, req.mode = "Docker DNS", "dns"
        elif addr is not None:
            req.backend_name = f"{addr.label} on {addr.node}" if addr.node and addr.task \
                else addr.label
            req.service = req.service or (addr.service or "")
            # Straight to a task's own address: the client resolved task IPs (DNS round robin).
            if req.mode == "direct" and addr.kind == "task":
                req.mode = "dnsrr"
        elif deliver is not None:
            req.backend_name = deliver.where
    overlay = ""
    if addr is not None and addr.network and len({h.node for h in hops if h.node}) > 1:
        # Between nodes, the backend's network is the overlay that carried it: its VNI.
        vni = names.network_vni(addr.network, req.start_ns)
        overlay = f", VNI {vni} ({addr.network})" if vni is not None else ""
    observed = [h for h in hops if h.kind == HopKind.VXLAN and h.before is not None]
    if observed:
        hops = _observed_crossing(hops, observed, names, overlay, agents)
    else:
        hops = _with_node_crossings(hops, hosts, overlay)
    req.hops = hops
    return req


def _observed_crossing(hops: list[Hop], observed: list[Hop], names: Names, overlay: str,
                       agents: dict[str, bool] | None) -> list[Hop]:
    """The VXLAN crossing the kernel saw (correlate: a hop where it left, one where it
    arrived), as one hop at the sender saying what was seen at which end."""
    out = next((h for h in observed if h.detail.endswith(" " + VXLAN_OUT)), None)
    arrived = next((h for h in observed if h.detail.endswith(" " + VXLAN_IN)), None)
    first = out or arrived
    assert first is not None and first.before is not None
    outer = first.before
    vni = first.detail.split()[1]

    def node_of(hop: Hop | None, ip: str) -> str:
        a = names.addr(ip, first.ts_ns)
        return (hop.node if hop is not None else "") or (a.node if a and a.node else "") or ip

    src, dst = node_of(out, outer.saddr), node_of(arrived, outer.daddr)
    wire = f"outer {outer.saddr} -> {outer.daddr}:{outer.dport}, VNI {vni}"
    if out is not None and arrived is not None:
        took = max(arrived.ts_ns - out.ts_ns, 0) / 1e3
        detail = f"{src} -> {dst}{overlay or f', VNI {vni}'} ({wire}; seen leaving and " \
                 f"arriving, {took:.0f} us)"
    elif out is not None:
        detail = f"sent over VXLAN from {src} ({wire}) and "
        if agents is None:
            detail += f"not seen arriving at {dst} (not traced here)"
        elif agents.get(dst, False):
            detail += f"never seen arriving at {dst}"
        else:
            detail += f"not seen at {dst}: {dst}: no agent, its hops are missing"
    else:
        detail = f"arrived at {dst} over VXLAN from {src} ({wire}); not seen leaving {src}"
    crossing = Hop(HopKind.VXLAN, first.ts_ns, first.netns, first.where, first.ifindex,
                   before=first.before, after=first.after, detail=detail, node=first.node)
    return [crossing if h is first else h for h in hops if h is first or h not in observed]


_PATH = (HopKind.SEND, HopKind.ENTER_NODE, HopKind.ENTER_NETNS, HopKind.BRIDGE, HopKind.DNAT,
         HopKind.MARK, HopKind.LB, HopKind.SNAT, HopKind.DELIVER)


def _with_node_crossings(hops: list[Hop], hosts: set[int], overlay: str) -> list[Hop]:
    """Where the path moves from one node's sandbox or container to another node's, it went
    over the overlay: show the VXLAN crossing. Host to host is the underlay, not VXLAN."""
    out: list[Hop] = []
    prev: Hop | None = None
    for h in hops:
        if h.kind in _PATH:
            if prev is not None and prev.node and h.node and prev.node != h.node \
                    and not (prev.netns in hosts and h.netns in hosts):
                out.append(Hop(HopKind.VXLAN, h.ts_ns, prev.netns, prev.where, node=prev.node,
                               detail=f"{prev.node} -> {h.node}{overlay}"))
            prev = h
        out.append(h)
    return out


def label_lb(hops: list[Hop], note: str) -> list[Hop]:
    """Say how load balancing was done (e.g. "IPVS stand-in") on each LB hop."""
    return [replace(h, detail=note) if h.kind == HopKind.LB and not h.detail else h
            for h in hops]
