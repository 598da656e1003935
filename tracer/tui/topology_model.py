"""The enrichment snapshot as a person would draw the cluster: nodes holding sandboxes and
tasks with their addresses, overlay networks between them, services with VIPs and fwmarks.

Snapshots come in two shapes: a names change log ({"changes": [...]}, live and replayed
traces) and a plain description ({"nodes", "sandboxes", "services", ...}, fixtures and the
netns lab). Both end up here as one Topology.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tracer.enrich.names import short_task

# The order sandboxes are drawn in a node: the way a request walks through it.
_ORDER = {"host": 0, "ingress_sbox": 1, "lb": 2, "overlay": 3, "named": 4, "container": 5}


@dataclass
class Place:
    """A network namespace: a node's host, a Docker sandbox, or a task's container."""

    name: str
    kind: str
    service: str = ""
    addrs: dict[str, str] = field(default_factory=dict)  # ip -> network ("" = unknown)
    notes: list[str] = field(default_factory=list)  # fwmarks balanced here, VNIs

    @property
    def is_task(self) -> bool:
        return self.kind == "container"


@dataclass
class Service:
    name: str
    mode: str = ""
    vips: dict[str, str] = field(default_factory=dict)  # network -> ip
    ports: list[str] = field(default_factory=list)
    tasks: list[str] = field(default_factory=list)  # "task on node"


@dataclass
class Topology:
    nodes: dict[str, dict[str, Place]] = field(default_factory=dict)  # node -> name -> place
    node_info: dict[str, str] = field(default_factory=dict)  # node -> "addr, role"
    networks: dict[str, str] = field(default_factory=dict)  # name -> "overlay, VNI 4096, ..."
    services: dict[str, Service] = field(default_factory=dict)

    def place(self, node: str, name: str, kind: str = "named") -> Place:
        places = self.nodes.setdefault(node, {})
        if name not in places:
            places[name] = Place(name, kind)
        elif kind != "named" and places[name].kind == "named":
            places[name].kind = kind
        return places[name]

    def service(self, name: str) -> Service:
        return self.services.setdefault(name, Service(name))

    def sorted_places(self, node: str) -> list[Place]:
        return sorted(self.nodes[node].values(), key=lambda p: (_ORDER.get(p.kind, 9), p.name))


def topology_of(snapshot: dict[str, Any] | None) -> Topology:
    if not snapshot:
        return Topology()
    if isinstance(snapshot.get("changes"), list):
        return _from_changes(snapshot["changes"])
    return _from_description(snapshot)


def _latest(changes: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    """Per (source, kind): key -> value as it holds at the end of the log."""
    state: dict[tuple[str, str], dict[str, Any]] = {}
    for c in changes:
        key = c.get("key")
        key = "/".join(map(str, key)) if isinstance(key, list) else str(key)
        table = state.setdefault((str(c.get("src", "")), str(c.get("kind", ""))), {})
        if c.get("value") is None:
            table.pop(key, None)
        else:
            table[key] = c["value"]
    return state


def _from_changes(changes: list[dict[str, Any]]) -> Topology:
    t = Topology()
    state = _latest(changes)
    # Every source's netns, one entry per inode: Docker's words win over a bare netns name.
    by_inode: dict[str, dict[str, Any]] = {}
    for (_, kind), table in sorted(state.items(), key=lambda kv: kv[0][0] == "docker"):
        if kind == "netns":
            for inode, ns in table.items():
                if isinstance(ns, dict):
                    by_inode[inode] = {**by_inode.get(inode, {}), **ns}
    nodes = {ns["node"] for ns in by_inode.values() if ns.get("node")}
    where_by_name: dict[str, tuple[str, str]] = {}  # "node/netns" or bare name -> place
    for inode, ns in by_inode.items():
        node = ns.get("node") or ""
        name = ns.get("name", inode)
        if not node and name in nodes:  # a netns named after a node is that node's host
            node, name = name, "host"
        label = short_task(ns["task"]) if ns.get("task") else name
        p = t.place(node, label, ns.get("kind", "named"))
        p.service = ns.get("service") or p.service
        if node and ns.get("name"):
            where_by_name[f"{node}/{ns['name']}"] = (node, label)
    # Bare names (a netns scan without Docker) mean the netns of that inode, whatever its node.
    for (src, kind), table in state.items():
        if kind == "netns" and src != "docker":
            for inode, ns in table.items():
                merged = by_inode.get(inode, {})
                if isinstance(ns, dict) and ns.get("name") and merged.get("node"):
                    label = short_task(merged["task"]) if merged.get("task") else merged["name"]
                    where_by_name.setdefault(ns["name"], (merged["node"], label))
    for (_, kind), table in state.items():
        if kind == "addrs":
            for ip, a in table.items():
                _add_addr(t, ip, a, where_by_name, nodes)
        elif kind == "fwmarks":
            for key, svc in table.items():
                inode, _, mark = key.partition("/")
                ns = by_inode.get(inode, {})
                if ns:
                    node = ns.get("node") or ""
                    name = short_task(ns["task"]) if ns.get("task") else ns.get("name", inode)
                    note = f"IPVS fwmark {mark} -> {svc}"
                    place = t.place(node, name)
                    if note not in place.notes:
                        place.notes.append(note)
        elif kind == "ports":
            for port, svc in table.items():
                proto, _, number = port.partition("/")
                t.service(str(svc)).ports.append(f"{number}/{proto}")
        elif kind == "vnis":
            for vni, network in table.items():
                t.networks[str(network)] = f"overlay, VXLAN VNI {vni}"
    for node, places in t.nodes.items():
        for p in places.values():
            if p.is_task and p.service:
                svc = t.service(p.service)
                if f"{p.name} on {node}" not in svc.tasks:
                    svc.tasks.append(f"{p.name} on {node}")
    return t


def _add_addr(
    t: Topology,
    ip: str,
    a: Any,
    where_by_name: dict[str, tuple[str, str]],
    nodes: set[str],
) -> None:
    if not isinstance(a, dict):
        return
    if a.get("kind") == "vip":
        if a.get("service"):
            t.service(a["service"]).vips[a.get("network") or "?"] = ip
        return
    netns, node = a.get("netns") or "", a.get("node") or ""
    if not node and netns in nodes:
        node, netns = netns, "host"
    where = where_by_name.get(f"{node}/{netns}") or where_by_name.get(netns)
    if where is None:
        return
    if node and where[0] != node:
        return  # the same bare name on another node: not this address's place
    place = t.place(*where)
    if ip not in place.addrs or a.get("network"):
        place.addrs[ip] = a.get("network") or ""


def _from_description(d: dict[str, Any]) -> Topology:
    t = Topology()
    for node, info in (d.get("nodes") or {}).items():
        t.nodes.setdefault(node, {})
        if isinstance(info, dict):
            t.node_info[node] = ", ".join(str(v) for k, v in info.items() if k != "engine")
    lab = len(t.nodes) == 1 and next(iter(t.nodes))  # the netns lab: one node, bare names
    for key, sb in (d.get("sandboxes") or {}).items():
        node, _, name = key.rpartition("/")
        node = node or (lab or "")
        kind = sb.get("kind", "named") if isinstance(sb, dict) else "named"
        p = t.place(node, name, kind)
        if isinstance(sb, dict):
            for ip in sb.get("addrs", []):
                p.addrs[ip] = ""
            if sb.get("network"):
                p.notes.append(f"overlay {sb['network']}")
    for name, net in (d.get("networks") or {}).items():
        if isinstance(net, dict):
            words = [str(net.get("driver", ""))]
            if net.get("vni") is not None:
                words.append(f"VXLAN VNI {net['vni']}")
            if net.get("subnet"):
                words.append(str(net["subnet"]))
            t.networks[name] = ", ".join(w for w in words if w)
    for name, svc in (d.get("services") or {}).items():
        if not isinstance(svc, dict):
            continue
        s = t.service(name)
        s.mode = str(svc.get("mode", ""))
        s.vips = {str(k): str(v) for k, v in (svc.get("vips") or {}).items()}
        s.ports = [str(p) for p in svc.get("ports", [])]
        s.tasks = [str(x).replace("@", " on ") for x in svc.get("tasks", [])]
        for network, mark in (svc.get("fwmarks") or {}).items():
            s.ports.append(f"fwmark {mark} ({network})")
    for key, tables in (d.get("ipvs") or {}).items():
        node, _, name = key.rpartition("/")
        p = t.place(node or (lab or ""), name)
        for virtual, reals in (tables or {}).items():
            p.notes.append(f"IPVS {virtual} -> {', '.join(r.split()[0] for r in reals)}")
    for mark, what in (d.get("fwmarks") or {}).items():
        t.networks[f"fwmark {mark}"] = str(what)
    for port, what in (d.get("ports") or {}).items():
        t.networks[f"port {port}"] = str(what)
    return t
