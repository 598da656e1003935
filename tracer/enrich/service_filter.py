"""`--service NAME`: a Swarm service's addresses and ports, asked of Docker, for the kernel filter.

A service is reached three ways: its published ports on every node (routing mesh), its VIPs
(VIP mode) and its tasks' own addresses (DNS round robin, and where the VIP leads). The filter
keeps all of them, and DNS for a DNS round-robin service, whose balancing is in the answers;
flows then stay matched through every NAT on their way. Resolved once, when
tracing starts: tasks created later are matched through the VIP and ports, not their address.
"""

from __future__ import annotations

from dataclasses import dataclass

import docker

from tracer.enrich.docker_topology import DOCKER_GONE, local_docker_sockets
from tracer.errors import TopologyError

API_TIMEOUT_S = 5
DNS_PORT = 53


@dataclass(frozen=True)
class ServiceMatch:
    ports: tuple[int, ...]  # published (routing-mesh) ports
    addrs: tuple[str, ...]  # VIPs and task addresses


def _ip(cidr: str) -> str:
    return cidr.split("/", 1)[0]


def _lookup(client: docker.DockerClient, name: str) -> ServiceMatch | None:
    try:
        svc = client.services.get(name)
        tasks = svc.tasks(filters={"desired-state": "running"})
    except docker.errors.NotFound:
        return None
    endpoint = svc.attrs.get("Endpoint") or {}
    ports = {int(p["PublishedPort"]) for p in endpoint.get("Ports") or [] if p.get("PublishedPort")}
    mode = ((svc.attrs.get("Spec") or {}).get("EndpointSpec") or {}).get("Mode")
    if mode == "dnsrr":
        ports.add(DNS_PORT)  # DNS round robin balances in Docker DNS's answers: show them
    addrs = {_ip(v["Addr"]) for v in endpoint.get("VirtualIPs") or [] if v.get("Addr")}
    for task in tasks:
        for att in task.get("NetworksAttachments") or []:
            addrs |= {_ip(a) for a in att.get("Addresses") or []}
    return ServiceMatch(tuple(sorted(ports)), tuple(sorted(addrs)))


def service_match(names: list[str], sockets: list[str] | None = None) -> ServiceMatch:
    """Ports and addresses of the named services, from the first swarm manager that knows
    each. One clear error if Docker cannot be reached or a service does not exist."""
    found = sockets if sockets is not None else local_docker_sockets()
    if not found:
        raise TopologyError("--service needs Docker: no dockerd found on this machine "
                            "(use --port/--addr instead)")
    ports: set[int] = set()
    addrs: set[str] = set()
    missing = list(names)
    for sock in found:
        try:
            client = docker.DockerClient(base_url=sock, timeout=API_TIMEOUT_S)
            try:
                for name in list(missing):
                    try:
                        match = _lookup(client, name)
                    except docker.errors.APIError:
                        break  # not a swarm manager: ask the next daemon
                    if match is not None:
                        ports.update(match.ports)
                        addrs.update(match.addrs)
                        missing.remove(name)
            finally:
                client.close()
        except DOCKER_GONE:
            continue  # a daemon that does not answer: the others may know the service
    if missing:
        raise TopologyError(f"no Swarm service named {', '.join(missing)} on this machine's "
                            "managers: `docker service ls` lists them")
    return ServiceMatch(tuple(sorted(ports)), tuple(sorted(addrs)))
