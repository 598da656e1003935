"""Put names on a correlated request: netns, backend task/container, the service of a mark."""

from __future__ import annotations

from dataclasses import replace

from tracer.enrich.names import Names, NetnsName
from tracer.model import Hop, HopKind, Request

# Docker's embedded DNS server in every container's netns.
DOCKER_DNS = "127.0.0.11"


def annotate(req: Request, names: Names) -> Request:
    """Fill hop.where, hop.node, mark services and the backend's name, as of each hop's time."""
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
    req.hops = _with_node_crossings(hops, hosts, overlay)
    return req


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
