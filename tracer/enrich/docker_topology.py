"""Reading one Docker node through its API socket (docker SDK) into Topology objects.

Names come from the Docker API only. Paths Docker reports (SandboxKey, exec root) are opened
through /proc/<dockerd pid>/root, because a daemon in its own mount namespace (node2 of the
lab) mounts its netns files where the root mount namespace cannot see them.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker
import requests

from tracer.enrich.docker_client import docker_client
from tracer.enrich.fwmark_owners import FwmarkOwners
from tracer.enrich.ipvs import ipvs_available
from tracer.enrich.names import AddrName, NetnsName
from tracer.enrich.netns_names import NetnsReader, nsfs_inode
from tracer.enrich.swarm_networks import inspect_network, ip_of, read_networks
from tracer.enrich.topology import Topology
from tracer.procs import cmdline, pids_named

log = logging.getLogger(__name__)

DEFAULT_SOCKET = "unix:///var/run/docker.sock"
DEFAULT_EXEC_ROOT = "/var/run/docker"
API_TIMEOUT_S = 10
# A daemon that went away (or never answered) raises any of these.
DOCKER_GONE = (docker.errors.DockerException, requests.exceptions.RequestException, OSError)


def _flag(argv: list[str], *names: str) -> list[str]:
    """Values of a command-line flag, in `--flag v` and `--flag=v` form."""
    out = []
    for i, arg in enumerate(argv):
        for name in names:
            if arg == name and i + 1 < len(argv):
                out.append(argv[i + 1])
            elif arg.startswith(f"{name}="):
                out.append(arg.split("=", 1)[1])
    return out


def local_docker_sockets() -> list[str]:
    """The API sockets of every dockerd running on this machine (the lab's node2 included),
    one per daemon."""
    found: list[str] = []
    daemons: set[int] = set()  # their pids, as their sockets' peers
    env = os.environ.get("DOCKER_HOST")
    if env and env.startswith("unix://"):
        found.append(env)
        if (daemon := peer_pid(env)) is not None:
            daemons.add(daemon)
    for pid in pids_named("dockerd"):
        hosts = [h for h in _flag(cmdline(pid), "-H", "--host") if h.startswith("unix://")]
        for host in hosts or [DEFAULT_SOCKET]:
            # Through the daemon's own root: its socket may sit in another mount namespace.
            path = f"unix:///proc/{pid}/root{host.removeprefix('unix://')}"
            if not os.path.exists(path.removeprefix("unix://")):
                if not _root_closed(pid):
                    continue  # still starting (found at the next look), or gone
                path = host  # a container without CAP_SYS_PTRACE: the mounted socket
            # A process of the daemon's (a re-exec) reaches its socket under another name:
            # followed twice, the daemon would hold twice the connections.
            daemon = peer_pid(path)
            if host in found or path in found or daemon in daemons:
                continue
            found.append(path)
            if daemon is not None:
                daemons.add(daemon)
    # A container that does not share the host's pid namespace sees no dockerd process, only
    # the socket mounted into it.
    if not found and os.path.exists(DEFAULT_SOCKET.removeprefix("unix://")):
        found.append(DEFAULT_SOCKET)
    return found


def _root_closed(pid: int) -> bool:
    """Whether this process may not look into the root of process `pid` (no
    CAP_SYS_PTRACE); False if it may, or if the process is gone."""
    try:
        os.stat(f"/proc/{pid}/root/")
    except PermissionError:
        return True
    except OSError:
        return False
    return False


def peer_pid(sock_url: str) -> int | None:
    """Pid of the process serving a unix socket (SO_PEERCRED): the dockerd behind it."""
    if not sock_url.startswith("unix://"):
        return None
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.settimeout(2)
        s.connect(sock_url.removeprefix("unix://"))
        cred = s.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        pid, _uid, _gid = struct.unpack("3i", cred)
        return int(pid)
    except OSError:
        return None
    finally:
        s.close()


def _exec_root(pid: int) -> str:
    argv = cmdline(pid)
    if found := _flag(argv, "--exec-root"):
        return found[-1]
    try:
        conf = json.loads(Path(f"/proc/{pid}/root/etc/docker/daemon.json").read_text())
        return str(conf.get("exec-root", DEFAULT_EXEC_ROOT))
    except (OSError, ValueError):
        return DEFAULT_EXEC_ROOT


def docker_netns_dirs() -> list[Path]:
    """Where every running dockerd keeps its sandboxes' netns files (seen from here)."""
    return [Path(f"/proc/{pid}/root") / _exec_root(pid).lstrip("/") / "netns"
            for pid in pids_named("dockerd")]


@dataclass
class NodeReading:
    """What one node's daemon said: its own sandboxes first, its view of others second."""

    node: str
    own: Topology
    remote: Topology  # tasks on other nodes as this node's network database knows them
    addr: str | None  # the node's swarm address (NodeAddr), to name "Host IP"s
    node_addrs: dict[str, str] = field(default_factory=dict)  # manager's view: addr -> hostname


class DockerNode:
    """One dockerd: an SDK client plus where its netns files are."""

    def __init__(self, sock_url: str) -> None:
        self.url = sock_url
        self.client = docker_client(sock_url, API_TIMEOUT_S)
        self.pid = peer_pid(sock_url)
        try:
            info = self.client.info()
        except DOCKER_GONE:
            self.client.close()  # retried every few seconds while the daemon is away
            raise
        self.name: str = info.get("Name") or sock_url
        swarm = info.get("Swarm") or {}
        self.node_addr: str | None = swarm.get("NodeAddr") or None
        self.is_manager = bool(swarm.get("ControlAvailable"))
        root = Path(f"/proc/{self.pid}/root") if self.pid else Path("/")
        self.root = root
        self.netns_dir: Path | None = None
        self.host_netns: Path | None = None
        if self.pid:
            self.netns_dir = root / _exec_root(self.pid).lstrip("/") / "netns"
            self.host_netns = Path(f"/proc/{self.pid}/ns/net")
        elif (mounted := Path(DEFAULT_EXEC_ROOT, "netns")).is_dir():
            # In a container that cannot see the daemon (a Swarm task has no host pid
            # namespace): Docker's netns directory as mounted at its default place. In it,
            # "default" is Docker's handle on the host netns (host-network sandboxes).
            self.netns_dir = mounted
            self.host_netns = mounted / "default" if (mounted / "default").exists() else None
        self._fwmarks = FwmarkOwners(self.name, self.netns_dir)

    def close(self) -> None:
        self.client.close()

    def netns_reader(self) -> NetnsReader:
        """Reads this node's netns files and host netns, named by file (the fallback layer)."""
        dirs = (self.netns_dir,) if self.netns_dir else ()
        return NetnsReader(dirs, node=self.name, root=self.host_netns)

    def _path(self, p: str) -> Path:
        path = self.root / p.lstrip("/")
        if not self.pid and not path.exists() and Path(p).parent.name == "netns":
            # In a container that cannot see the daemon, its sandboxes are wherever they were
            # mounted: at Docker's default place, whatever the daemon's exec root.
            return Path(DEFAULT_EXEC_ROOT, "netns", Path(p).name)
        return path

    def read(self) -> NodeReading:
        """One full reading of this node. Raises docker.errors.DockerException if it is gone."""
        netns: dict[int, NetnsName] = {}
        addrs: dict[str, AddrName] = {}
        if self.host_netns is not None and (ino := nsfs_inode(self.host_netns)) is not None:
            netns[ino] = NetnsName("host", "host", self.name)
        sandbox_of: dict[str, NetnsName] = {}  # sandbox id[:12] -> its container's netns name
        for c in self.client.containers.list():
            ns = self._container(c.attrs, netns, addrs)
            sandbox_of[(c.attrs.get("NetworkSettings") or {}).get("SandboxID", "")[:12]] = ns
        nets = {n.id: n.name for n in self.client.networks.list()}
        seen = read_networks(self.client.api, self.name, nets, sandbox_of, addrs)
        self._special_netns(nets, netns)
        services, ports = self._services(nets) if self.is_manager else ({}, {})
        vips = seen.vips | services
        fwmarks = {}
        if ipvs_available():  # without IPVS Docker installs no MARK rules and no IPVS table
            task_service = {ip: a.service for ip, a in (seen.remote | addrs).items() if a.service}
            fwmarks = self._fwmarks.read(netns, vips, ports, task_service, seen.lb_index)
        return NodeReading(
            self.name,
            Topology(netns=netns, addrs=addrs | vips, fwmarks=fwmarks, lb_index=seen.lb_index,
                     ports=ports, vnis=seen.vnis),
            Topology(addrs=seen.remote), self.node_addr, self._node_addrs())

    def _inspect(self, net_id: str) -> dict[str, Any]:
        # tracer/diagnose/docker_intent.py reads the networks as read() does.
        return inspect_network(self.client.api, net_id)

    def _container(self, attrs: dict[str, Any], netns: dict[int, NetnsName],
                   addrs: dict[str, AddrName]) -> NetnsName:
        labels = attrs.get("Config", {}).get("Labels") or {}
        settings = attrs.get("NetworkSettings") or {}
        task = labels.get("com.docker.swarm.task.name")
        ns = NetnsName(task or attrs.get("Name", "").lstrip("/") or attrs["Id"][:12], "container",
                       self.name, attrs["Id"][:12], task,
                       labels.get("com.docker.swarm.service.name"))
        key = settings.get("SandboxKey")
        # A host-network container (the deployed agent) shares the host netns: still "host".
        host_net = (attrs.get("HostConfig") or {}).get("NetworkMode") == "host"
        if key and not host_net and (ino := nsfs_inode(self._path(key))) is not None:
            netns[ino] = ns
        for net_name, ep in (settings.get("Networks") or {}).items():
            if ep.get("IPAddress"):
                addrs[ep["IPAddress"]] = AddrName("task" if task else "sandbox", task,
                                                  ns.container, ns.service, net_name, self.name,
                                                  ns.name)
        return ns

    def _special_netns(self, nets: dict[str, str], netns: dict[int, NetnsName]) -> None:
        """ingress_sbox, lb_<netid> and 1-<netid> files, named after their network."""
        if self.netns_dir is None:
            return
        try:
            files = list(self.netns_dir.iterdir())
        except OSError:
            return
        for path in files:
            f = path.name
            if f == "ingress_sbox":
                ns = NetnsName("ingress_sbox", "ingress_sbox", self.name)
            elif f.startswith("lb_") or (f[:1].isdigit() and "-" in f):
                lb = f.startswith("lb_")
                kind, prefix = ("lb", f[3:]) if lb else ("overlay", f.split("-", 1)[1])
                net = next((n for i, n in nets.items() if prefix and i.startswith(prefix)), prefix)
                ns = NetnsName(f"lb_{net}" if kind == "lb" else f"{f.split('-', 1)[0]}-{net}",
                               kind, self.name)  # type: ignore[arg-type]
            else:
                continue
            if (ino := nsfs_inode(path)) is not None:
                netns[ino] = ns

    def _services(
        self, nets: dict[str, str]
    ) -> tuple[dict[str, AddrName], dict[tuple[str, int], str]]:
        """VIPs and routing-mesh ports of every service (the manager knows them all)."""
        vips: dict[str, AddrName] = {}
        ports: dict[tuple[str, int], str] = {}
        for svc in self.client.services.list():
            name = svc.name
            endpoint = svc.attrs.get("Endpoint") or {}
            for vip in endpoint.get("VirtualIPs") or []:
                ip = ip_of(vip.get("Addr"))
                if ip:
                    vips[ip] = AddrName("vip", service=name,
                                        network=nets.get(vip.get("NetworkID", "")))
            for port in endpoint.get("Ports") or []:
                if port.get("PublishedPort"):
                    ports[(port.get("Protocol", "tcp"), int(port["PublishedPort"]))] = name
        return vips, ports

    def _node_addrs(self) -> dict[str, str]:
        if not self.is_manager:
            return {}
        out = {}
        for n in self.client.nodes.list():
            addr = (n.attrs.get("Status") or {}).get("Addr")
            host = (n.attrs.get("Description") or {}).get("Hostname")
            if addr and host:
                out[addr] = host
        return out


def merge_readings(readings: list[NodeReading]) -> Topology:
    """All nodes' own sandboxes, then what nodes know of each other's tasks (Host IP named)."""
    hosts = {r.addr: r.node for r in readings if r.addr}
    for r in readings:
        hosts = r.node_addrs | hosts
    merged = Topology()
    for r in readings:
        merged = merged.merged(r.own)
    for r in readings:
        remote = {ip: AddrName(a.kind, a.task, a.container, a.service, a.network,
                               hosts.get(a.node or "", a.node), a.netns)
                  for ip, a in r.remote.addrs.items()}
        merged = merged.merged(Topology(addrs=remote))
    return merged
