"""Put names on a correlated request: netns, backend task/container, the service of a mark."""

from __future__ import annotations

from tracer.enrich.history import RecordedNames
from tracer.enrich.names import AddrName, Names
from tracer.model import VXLAN_IN, VXLAN_OUT, Hop, HopKind, Request

# Docker's embedded DNS server in every container's netns.
DOCKER_DNS = "127.0.0.11"

# A netns as hops show it: named (else the hop keeps "netns:<inode>"), label, node, and
# whether it is a node's own (underlay) netns.
_Where = tuple[bool, str, str, bool]
_UNNAMED: _Where = (False, "", "", False)


class Annotator:
    """Names hops as of each hop's time. A flood's requests cross the same few netns, marks
    and backends: answers that hold at every time are kept until the names change."""

    def __init__(self, names: Names | None, lb_note: str = "") -> None:
        self.names = names
        self.lb_note = lb_note  # how balancing is done, said on LB hops ("IPVS stand-in")
        self._recorded = names if isinstance(names, RecordedNames) else None
        self._version = -1
        self._netns: dict[int, _Where] = {}
        self._addrs: dict[str, AddrName | None] = {}
        self._marks: dict[tuple[int, int], str] = {}  # (netns, mark) -> the MARK hop's detail

    def _fresh(self) -> None:
        v = self._recorded.history.version if self._recorded is not None else -1
        if v != self._version:
            self._version = v
            self._netns.clear()
            self._addrs.clear()
            self._marks.clear()

    def _where(self, names: Names, inode: int, ts_ns: int) -> _Where:
        ns = names.netns(inode, ts_ns)
        where = (True, ns.label, ns.node or "", ns.kind == "host") if ns is not None \
            else _UNNAMED
        if self._recorded is not None and self._recorded.history.timeless("netns", inode):
            self._netns[inode] = where
        return where

    def _addr(self, names: Names, ip: str, ts_ns: int) -> AddrName | None:
        if ip in self._addrs:
            return self._addrs[ip]
        addr = names.addr(ip, ts_ns)
        if self._recorded is not None and self._recorded.history.timeless("addrs", ip):
            self._addrs[ip] = addr
        return addr

    def _mark(self, names: Names, inode: int, mark: int, ts_ns: int) -> str:
        svc = names.fwmark(inode, mark, ts_ns)
        detail = f"service {svc} (fwmark {mark})" if svc else ""
        if self._recorded is not None and self._recorded.fwmark_timeless(inode, mark):
            self._marks[(inode, mark)] = detail
        return detail

    def annotate(self, req: Request, agents: dict[str, bool] | None = None) -> Request:
        """Fill hop.where, hop.node, mark services and the backend's name, as of each hop's time.
        The hops are changed in place: nothing else holds them yet, and rebuilding ~10 hops
        per request was most of this function's cost live.

        `agents`, when tracing through agents: node -> whether its agent is streaming now; it
        tells a packet never seen arriving from one whose receiver was not traced."""
        names = self.names
        lb_note = self.lb_note
        if names is None:  # nothing to name with: only say how balancing was done
            for h in req.hops:
                if h.kind is _LB and not h.detail and lb_note:
                    h.detail = lb_note
            return req
        self._fresh()
        known, marks = self._netns, self._marks
        hosts: set[int] = set()  # netns that are a node's own (underlay) netns
        # What the rest needs, found in the same pass: a request's ~10 hops, every request.
        first: Hop | None = None  # the first hop that is not a DNS answer
        deliver: Hop | None = None
        observed: list[Hop] = []  # VXLAN crossings the kernel saw
        node0, nodes = "", 0  # a node of the path; 0, 1 or more than 1 nodes
        for h in req.hops:
            inode = h.netns
            w = known.get(inode)
            if w is None:
                w = self._where(names, inode, h.ts_ns)
            kind = h.kind
            if w[0]:
                if w[3]:
                    hosts.add(inode)
                    if kind is _ENTER_NETNS:
                        h.kind = kind = _ENTER_NODE
                h.where, h.node = w[1], w[2]
            if kind is _MARK:
                if not h.detail:
                    detail = marks.get((inode, h.mark))
                    h.detail = detail if detail is not None \
                        else self._mark(names, inode, h.mark, h.ts_ns)
            elif kind is _LB:
                if not h.detail and lb_note:
                    h.detail = lb_note
            elif kind is _DELIVER:
                if deliver is None:
                    deliver = h
            elif kind is _VXLAN and h.before is not None:
                observed.append(h)
            if first is None and kind is not _DNS:
                first = h
            node = h.node
            if node and node != node0:
                if nodes:
                    nodes = 2
                else:
                    node0, nodes = node, 1
        hops = req.hops
        # The sender is known when its own netns was traced (a send, or a VIP balancer in it).
        if first is not None and (first.kind is _SEND or first.kind is _LB) \
                and not first.where.startswith("netns:"):
            req.client_name = first.where
        addr = None
        if req.backend_addr:
            ip = req.backend_addr.rsplit(":", 1)[0]
            addr = self._addr(names, ip, deliver.ts_ns if deliver else req.start_ns)
            if ip == DOCKER_DNS:
                req.backend_name, req.mode = "Docker DNS", "dns"
            elif addr is not None:
                req.backend_name = f"{addr.label} on {addr.node}" if addr.node and addr.task \
                    else addr.label
                req.service = req.service or (addr.service or "")
                # Straight to a task's own address: the client resolved task IPs (DNS round
                # robin).
                if req.mode == "direct" and addr.kind == "task":
                    req.mode = "dnsrr"
            elif deliver is not None:
                req.backend_name = deliver.where
        overlay = ""
        if addr is not None and addr.network and nodes > 1:
            # Between nodes, the backend's network is the overlay that carried it: its VNI.
            vni = names.network_vni(addr.network, req.start_ns)
            overlay = f", VNI {vni} ({addr.network})" if vni is not None else ""
        if observed:  # the kernel saw the crossing: say what it saw at each end
            req.hops = _observed_crossing(hops, observed, names, overlay, agents)
        elif nodes:  # else infer it between two named nodes
            req.hops = _with_node_crossings(hops, hosts, overlay)
        return req


# Members as plain names: an enum member read off its class costs a lookup per hop (3.11).
_ENTER_NETNS, _ENTER_NODE, _MARK, _LB = \
    HopKind.ENTER_NETNS, HopKind.ENTER_NODE, HopKind.MARK, HopKind.LB
_SEND, _DELIVER, _VXLAN, _DNS = HopKind.SEND, HopKind.DELIVER, HopKind.VXLAN, HopKind.DNS

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
