"""Docker's intent, from its API on every local node: the services, their running tasks and
addresses, which sandboxes each node has and what each must hold.

Docker keeps a sandbox's netns at <exec root>/netns/<file>: `ingress_sbox`, `lb_<net id[:9]>`
for a network's VIP balancer, `1-<net id[:10]>` for an overlay's bridge and VXLAN device."""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tracer.diagnose.intent import (
    Balancer,
    DnsProbe,
    Intent,
    NodeIntent,
    Overlay,
    Published,
    Sandbox,
    Served,
)
from tracer.enrich.docker_topology import DOCKER_GONE, DockerNode
from tracer.enrich.ipvs import NO_IPVS_MESSAGE, ipvs_available
from tracer.enrich.names import short_task
from tracer.errors import TopologyError

log = logging.getLogger(__name__)

REBUILD = "docker service update --force {service}"
# What libnetwork sets in its ingress and load-balancer sandboxes where the kernel has IPVS.
IPVS_SYSCTLS = (("net.ipv4.vs.expire_nodest_conn", "1"), ("net.ipv4.vs.conn_reuse_mode", "0"))


def _ip(cidr: str | None) -> str | None:
    try:
        return str(ipaddress.ip_interface(cidr).ip) if cidr else None
    except ValueError:
        return None


@dataclass
class _Service:
    name: str
    mode: str  # "vip" or "dnsrr"
    vips: dict[str, str]  # network id -> VIP
    ports: list[tuple[str, int]]  # routing-mesh (ingress) published ports
    targets: list[tuple[str, int]]  # the tasks' ports those lead to
    tasks: dict[str, set[str]] = field(default_factory=dict)  # network id -> task addresses


def _services(mgr: DockerNode) -> list[_Service]:
    out = []
    for svc in mgr.client.services.list():
        attrs = svc.attrs
        spec_mode = ((attrs.get("Spec") or {}).get("EndpointSpec") or {}).get("Mode") or "vip"
        endpoint = attrs.get("Endpoint") or {}
        vips = {v["NetworkID"]: ip for v in endpoint.get("VirtualIPs") or []
                if (ip := _ip(v.get("Addr")))}
        mesh = [p for p in endpoint.get("Ports") or []
                if p.get("PublishedPort") and p.get("PublishMode", "ingress") == "ingress"]
        s = _Service(svc.name, spec_mode, vips,
                     [(p.get("Protocol", "tcp"), int(p["PublishedPort"])) for p in mesh],
                     [(p.get("Protocol", "tcp"), int(p["TargetPort"])) for p in mesh
                      if p.get("TargetPort")])
        for task in svc.tasks(filters={"desired-state": "running"}):
            if (task.get("Status") or {}).get("State") != "running":
                continue
            for att in task.get("NetworksAttachments") or []:
                net = (att.get("Network") or {}).get("ID", "")
                s.tasks.setdefault(net, set()).update(
                    ip for a in att.get("Addresses") or [] if (ip := _ip(a)))
        out.append(s)
    return out


def docker_intent(sockets: list[str]) -> Intent:
    """Intent of every node whose dockerd answers on `sockets`; one manager is needed."""
    nodes: list[DockerNode] = []
    for sock in sockets:
        try:
            nodes.append(DockerNode(sock))
        except DOCKER_GONE as err:
            log.warning("%s does not answer: %s", sock, err)
    try:
        mgr = next((n for n in nodes if n.is_manager), None)
        if mgr is None:
            raise TopologyError("check needs a swarm manager's view: no dockerd here is a "
                                "swarm manager (run check on a manager node)")
        ipvs = ipvs_available()
        services = _services(mgr)
        intents = tuple(_node(n, services, ipvs) for n in nodes if n.netns_dir is not None)
    except DOCKER_GONE as err:
        raise TopologyError(f"Docker stopped answering during check: {err}") from err
    finally:
        for n in nodes:
            n.close()
    notes = () if ipvs else (
        f"{NO_IPVS_MESSAGE}; IPVS tables, MARK rules and DOCKER-INGRESS DNAT not checked "
        "(Docker installs none here)",)
    return Intent("docker", ipvs, intents, REBUILD, notes)


def _node(n: DockerNode, services: list[_Service], ipvs: bool) -> NodeIntent:
    assert n.netns_dir is not None and n.host_netns is not None
    files = {p.name: p for p in _listdir(n.netns_dir)}
    nets = {net.id: net.name for net in n.client.networks.list()}
    details = {net_id: n._inspect(net_id) for net_id in nets}
    ingress_id = next((i for i, d in details.items() if d.get("Ingress")), None)
    addrs = {ip: s.name for s in services for ip in s.vips.values()}
    addrs |= {ip: s.name for s in services for ips in s.tasks.values() for ip in ips}
    sandboxes = [Sandbox(n.name, "host", "host", n.host_netns, (("net.ipv4.ip_forward", "1"),))]
    published: list[Published] = []
    vs = IPVS_SYSCTLS if ipvs else ()
    if ingress_id and "ingress_sbox" in files:
        balancers = _balancers(details[ingress_id], ingress_id, services, ipvs, mesh=True)
        sandboxes.append(Sandbox(n.name, "ingress_sbox", "ingress", files["ingress_sbox"],
                                 (("net.ipv4.ip_forward", "1"), *vs), balancers))
        gw = next((d for d in details.values() if d.get("Name") == "docker_gwbridge"), {})
        sbox_gw = _ip(((gw.get("Containers") or {}).get("ingress-sbox") or {}).get("IPv4Address"))
        if ipvs and sbox_gw:
            published = [Published(s.name, proto, port, sbox_gw) for s in services
                         for proto, port in s.ports]
    overlays = []
    for net_id, d in details.items():
        if d.get("Driver") != "overlay":
            continue
        name = nets[net_id]
        lb = next((p for f, p in files.items() if f.startswith("lb_") and net_id.startswith(f[3:])),
                  None)
        if lb is not None and net_id != ingress_id:
            sandboxes.append(Sandbox(n.name, f"lb_{name}", "lb", lb, vs,
                                     _balancers(d, net_id, services, ipvs, mesh=False)))
        ov = next((p for f, p in files.items() if f[:1].isdigit() and "-" in f
                   and net_id.startswith(f.split("-", 1)[1])), None)
        if ov is not None:
            overlays.append(Overlay(name, ov, dict(_remote(d, n.node_addr))))
    sandboxes += _tasks(n, services, ingress_id)
    return NodeIntent(n.name, n.node_addr, n.host_netns, tuple(sandboxes), tuple(published),
                      tuple(overlays), tuple(_dns_probes(n, services, nets)), addrs)


def _tasks(n: DockerNode, services: list[_Service], ingress_id: str | None) -> list[Sandbox]:
    """Task containers of services with published ports: they must serve the target port."""
    by_name = {s.name: s for s in services}
    out = []
    for c in n.client.containers.list():
        settings = c.attrs.get("NetworkSettings") or {}
        labels = c.labels or {}
        s = by_name.get(labels.get("com.docker.swarm.service.name", ""))
        task = labels.get("com.docker.swarm.task.name")
        if s is None or not task or not s.targets or not settings.get("SandboxKey"):
            continue
        addr = next((ep.get("IPAddress") for ep in (settings.get("Networks") or {}).values()
                     if ep.get("NetworkID") == ingress_id), None)
        if addr:
            out.append(Sandbox(n.name, short_task(task), "task",
                               n.root / settings["SandboxKey"].lstrip("/"),
                               serves=tuple(Served(s.name, proto, port, addr)
                                            for proto, port in s.targets)))
    return out


def _listdir(d: Path) -> list[Path]:
    try:
        return list(d.iterdir())
    except OSError:
        return []


def _balancers(detail: dict[str, Any], net_id: str, services: list[_Service], ipvs: bool,
               mesh: bool) -> tuple[Balancer, ...]:
    """The fwmark services this node's sandbox on the network must hold (LocalLBIndex)."""
    if not ipvs:
        return ()
    by_name = {s.name: s for s in services}
    out = []
    for name, svc in (detail.get("Services") or {}).items():
        s = by_name.get(name)
        index = int(svc.get("LocalLBIndex") or 0)
        if s is None or not index or s.mode != "vip" or (mesh and not s.ports):
            continue
        out.append(Balancer(index, name, frozenset(s.tasks.get(net_id, ()))))
    return tuple(out)


def _remote(detail: dict[str, Any], own_addr: str | None) -> Iterator[tuple[str, str]]:
    """Endpoints of the network on other nodes: address -> that node's address."""
    for svc in (detail.get("Services") or {}).values():
        for task in svc.get("Tasks") or []:
            host = (task.get("Info") or {}).get("Host IP")
            ip = _ip(task.get("EndpointIP"))
            if ip and host and host != own_addr:
                yield ip, host


def _dns_probes(n: DockerNode, services: list[_Service], nets: dict[str, str]
                ) -> Iterator[DnsProbe]:
    """One task container per network on this node asks for every service on it."""
    asked: set[str] = set()
    for c in n.client.containers.list():
        settings = c.attrs.get("NetworkSettings") or {}
        key = settings.get("SandboxKey")
        task = (c.labels or {}).get("com.docker.swarm.task.name")
        if not key or not task:
            continue
        for ep in (settings.get("Networks") or {}).values():
            net_id = ep.get("NetworkID", "")
            if net_id in asked or nets.get(net_id) == "ingress":
                continue
            asked.add(net_id)
            path = n.root / key.lstrip("/")
            for s in services:
                tasks = frozenset(s.tasks.get(net_id, ()))
                if not tasks and net_id not in s.vips:
                    continue
                want = frozenset({s.vips[net_id]}) if s.mode == "vip" and net_id in s.vips \
                    else tasks
                yield DnsProbe(n.name, short_task(task), path, s.name, s.name, want)
                if s.mode == "vip":
                    yield DnsProbe(n.name, short_task(task), path, f"tasks.{s.name}", s.name, tasks)
