"""What one node's networks say (inspected verbose, in swarm scope): endpoints that are not a
container's own, VXLAN ids, LocalLBIndex, VIPs, and the tasks on every node."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any

import docker

from tracer.enrich.names import AddrName, NetnsName

VXLAN_IDS = "com.docker.network.driver.overlay.vxlanid_list"


def ip_of(cidr: str | None) -> str | None:
    """The address of "10.0.0.5/24" (None if there is none)."""
    if not cidr:
        return None
    try:
        return str(ipaddress.ip_interface(cidr).ip)
    except ValueError:
        return None


@dataclass
class NetworksReading:
    remote: dict[str, AddrName] = field(default_factory=dict)  # tasks, as the networks know them
    lb_index: dict[tuple[str, int], str] = field(default_factory=dict)  # (node, fwmark) -> service
    vips: dict[str, AddrName] = field(default_factory=dict)
    vnis: dict[int, str] = field(default_factory=dict)  # VXLAN id -> network


def read_networks(api: docker.APIClient, node: str, nets: dict[str, str],
                  sandbox_of: dict[str, NetnsName], addrs: dict[str, AddrName]) -> NetworksReading:
    """Every network in nets (id -> name) of node; the endpoints named here go into addrs,
    which holds the containers' own (sandbox_of: sandbox id[:12] -> its container's netns)."""
    out = NetworksReading()
    for net_id, net_name in nets.items():
        detail = inspect_network(api, net_id)
        _endpoints(detail, node, net_name, sandbox_of, addrs)
        vni_list = (detail.get("Options") or {}).get(VXLAN_IDS, "")
        out.vnis |= {int(v): net_name for v in vni_list.split(",") if v.strip().isdigit()}
        for svc_name, svc in (detail.get("Services") or {}).items():
            if svc_name and svc.get("LocalLBIndex"):
                out.lb_index[(node, int(svc["LocalLBIndex"]))] = svc_name
            if svc_name and (vip := ip_of(svc.get("VIP"))):  # workers know VIPs too
                out.vips[vip] = AddrName("vip", service=svc_name, network=net_name)
            for task in svc.get("Tasks") or []:
                ip = ip_of(task.get("EndpointIP"))
                if ip:
                    out.remote[ip] = AddrName("task", task=task.get("Name"), service=svc_name,
                                              network=net_name,
                                              node=(task.get("Info") or {}).get("Host IP"))
    return out


def inspect_network(api: docker.APIClient, net_id: str) -> dict[str, Any]:
    """The network's details; {} if it was removed meanwhile."""
    try:  # verbose + swarm scope: services, VIPs, LocalLBIndex, tasks on every node
        return dict(api.inspect_network(net_id, verbose=True, scope="swarm"))
    except docker.errors.NotFound:
        try:  # a local network (bridge, host, docker_gwbridge)
            return dict(api.inspect_network(net_id))
        except docker.errors.NotFound:  # removed meanwhile
            return {}


def _endpoints(detail: dict[str, Any], node: str, net_name: str,
               sandbox_of: dict[str, NetnsName], addrs: dict[str, AddrName]) -> None:
    """Endpoints that are not a container's own: ingress-sbox, lb-<net>, gateway_<sbox>."""
    for key, ep in (detail.get("Containers") or {}).items():
        ip = ip_of(ep.get("IPv4Address"))
        name = ep.get("Name", "")
        if not ip or ip in addrs:
            continue
        if key == "ingress-sbox":
            addrs[ip] = AddrName("sandbox", network=net_name, node=node, netns="ingress_sbox")
        elif key.startswith("lb-"):
            addrs[ip] = AddrName("sandbox", network=net_name, node=node,
                                 netns=f"lb_{key.removeprefix('lb-')}")
        elif name.startswith("gateway_") and (ns := sandbox_of.get(name[8:20])) is not None:
            # The task's leg on docker_gwbridge (its way out of the swarm).
            addrs[ip] = AddrName("task" if ns.task else "sandbox", ns.task, ns.container,
                                 ns.service, net_name, node, ns.name)
