"""up / traffic / down of the swarm lab; state.json remembers what to undo."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker

from tracer.enrich.docker_topology import DOCKER_GONE
from tracer.enrich.ipvs import NO_IPVS_MESSAGE, ipvs_available
from tracer.errors import LabError
from tracer.lab.swarm import daemons, hoststate
from tracer.lab.swarm.image import import_image, rootfs_tar
from tracer.lab.swarm.layout import (
    DATA_DIR,
    MAX_NODES,
    STATE_DIR,
    STATE_FILE,
    VETH,
    LabNode,
    lab_nodes,
)
from tracer.lab.swarm.services import (
    MODE_SERVICE,
    PUBLISHED_PORT,
    Answer,
    client_container,
    create_services,
    form_swarm,
    request_from_client,
    request_from_host,
)

log = logging.getLogger(__name__)

# Docker writes here besides its --data-root/--exec-root; removed at down if new.
DOCKER_PATHS = (Path("/var/run/docker.sock"), Path("/etc/docker"), Path("/etc/docker/key.json"),
                Path("/run/docker"),
                Path("/var/run/docker"))


@dataclass(frozen=True)
class SwarmLab:
    nodes: tuple[LabNode, ...]
    services: tuple[str, ...]
    ipvs: bool
    up_seconds: float

    @property
    def notes(self) -> tuple[str, ...]:
        return () if self.ipvs else (NO_IPVS_MESSAGE,)

    def dead_nodes(self) -> list[str]:
        """Nodes whose dockerd does not answer (e.g. its netns was removed under it)."""
        dead = []
        for node in self.nodes:
            client = docker.DockerClient(base_url=node.socket, timeout=5)
            try:
                client.ping()
            except DOCKER_GONE:
                dead.append(node.name)
            finally:
                client.close()
        return dead

    @contextmanager
    def open_clients(self) -> Iterator[dict[str, docker.DockerClient]]:
        """One docker SDK client per node, by node name, closed after the block."""
        clients = {n.name: docker.DockerClient(base_url=n.socket, timeout=30) for n in self.nodes}
        try:
            yield clients
        finally:
            for c in clients.values():
                c.close()


def _run(*argv: str) -> None:
    res = subprocess.run(argv, capture_output=True, text=True, check=False)
    if res.returncode != 0:
        raise LabError(f"`{' '.join(argv)}` failed: {res.stderr.strip()}")


def _write_state(d: dict[str, Any]) -> None:
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    tmp = STATE_FILE.with_suffix(".tmp")
    tmp.write_text(json.dumps(d, indent=1))
    os.replace(tmp, STATE_FILE)


def _read_state() -> dict[str, Any] | None:
    try:
        return json.loads(STATE_FILE.read_text())  # type: ignore[no-any-return]
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as err:
        raise LabError(f"{STATE_FILE} is unreadable ({err}): remove it, clean up by hand") from err


def load() -> SwarmLab | None:
    """The running lab, or None."""
    st = _read_state()
    if st is None or "up_seconds" not in st:
        return None
    return SwarmLab(tuple(LabNode(**n) for n in st["nodes"]), tuple(st["services"]),
                    st["ipvs"], st["up_seconds"])


def _link_nodes(nodes: list[LabNode]) -> None:
    """A veth pair: node1's end in the root netns, node2's end in netns stlab-node2."""
    _run("ip", "link", "add", VETH[0], "type", "veth", "peer", "name", VETH[1])
    _run("ip", "addr", "add", f"{nodes[0].addr}/24", "dev", VETH[0])
    _run("ip", "link", "set", VETH[0], "up")
    for node in nodes[1:]:
        assert node.netns is not None
        _run("ip", "netns", "add", node.netns)
        _run("ip", "link", "set", VETH[1], "netns", node.netns)
        _run("ip", "-n", node.netns, "addr", "add", f"{node.addr}/24", "dev", VETH[1])
        _run("ip", "-n", node.netns, "link", "set", VETH[1], "up")
        _run("ip", "-n", node.netns, "link", "set", "lo", "up")
    if len(nodes) == 1:
        _run("ip", "link", "set", VETH[1], "up")


def up(nodes: int = 2, progress: Callable[[str], None] | None = None) -> SwarmLab:
    """Build the lab: dockerds, a swarm of `nodes` nodes, overlay1, the services. Idempotent."""
    say = progress or log.info
    if not 1 <= nodes <= MAX_NODES:
        raise LabError(f"--nodes must be 1..{MAX_NODES}")
    existing = load()
    if existing is not None:
        if dead := existing.dead_nodes():
            raise LabError(f"the swarm lab is broken ({', '.join(dead)} not answering): "
                           "run `swarmtrace swarmlab down` first")
        if len(existing.nodes) == nodes:
            return existing
        raise LabError(f"a {len(existing.nodes)}-node swarm lab is up: `swarmlab down` first")
    if os.geteuid() != 0:
        raise LabError("the swarm lab needs root (netns, dockerd, iptables)")
    specs = lab_nodes(nodes)
    if (pid := daemons.foreign_dockerd(specs)) is not None:
        raise LabError(f"a dockerd this lab did not start is running (pid {pid}): stop it first")
    if _read_state() is not None or STATE_DIR.exists() or DATA_DIR.exists():
        raise LabError(f"leftovers of an earlier swarm lab in {STATE_DIR}: run `swarmlab down`")
    t0 = time.monotonic()
    ipvs = ipvs_available()
    if not ipvs:
        say(NO_IPVS_MESSAGE)
    before = hoststate.record([STATE_DIR, DATA_DIR, *DOCKER_PATHS])
    # Written before anything is made, so that down() can undo a half-built lab.
    _write_state({"nodes": [n.to_dict() for n in specs], "host": before.to_dict()})
    clients: dict[str, docker.DockerClient] = {}
    try:
        if ipvs and not Path("/proc/net/ip_vs").exists():
            subprocess.run(["modprobe", "-a", "ip_vs", "ip_vs_rr"], capture_output=True,
                           check=False)
        # overlay2 refuses an overlayfs backing (/var in the stock-kernel VM): use a tmpfs.
        DATA_DIR.mkdir(parents=True)
        _run("mount", "-t", "tmpfs", "-o", "mode=700", "swarmtrace-swarm", str(DATA_DIR))
        _link_nodes(specs)
        rootfs = rootfs_tar()
        for node in specs:
            daemons.start(node)
            clients[node.name] = docker.DockerClient(base_url=node.socket, timeout=60)
            import_image(clients[node.name], rootfs)
            say(f"{node.name}: dockerd up at {node.addr} ({node.socket})")
        form_swarm(specs, clients)
        services = create_services(clients[specs[0].name], specs, ipvs)
    except BaseException:
        # Also on Ctrl-C: leave nothing behind.
        for c in clients.values():
            c.close()
        down()
        raise
    for c in clients.values():
        c.close()
    lab = SwarmLab(tuple(specs), tuple(services), ipvs, round(time.monotonic() - t0, 1))
    _write_state({"nodes": [n.to_dict() for n in specs], "host": before.to_dict(),
                  "services": list(services), "ipvs": ipvs, "up_seconds": lab.up_seconds})
    say(f"swarm lab up: {nodes} node(s), services {', '.join(services)} "
        f"in {lab.up_seconds:.1f} s")
    return lab


def traffic(mode: str = "dnsrr", count: int = 10) -> list[Answer]:
    """Send `count` requests the way `mode` (dnsrr, vip, mesh) works; one Answer each."""
    lab = load()
    if lab is None:
        raise LabError("no swarm lab is up: run `swarmtrace swarmlab up` first")
    if mode not in MODE_SERVICE:
        raise LabError(f"unknown mode {mode!r}: use one of {', '.join(MODE_SERVICE)}")
    if MODE_SERVICE[mode] not in lab.services:
        raise LabError(NO_IPVS_MESSAGE if not lab.ipvs else f"service for {mode} is missing")
    if mode == "mesh":
        return [request_from_host(lab.nodes[i % len(lab.nodes)].addr, PUBLISHED_PORT)
                for i in range(count)]
    with lab.open_clients() as clients:
        container = client_container(clients)
        return [request_from_client(container, MODE_SERVICE[mode]) for _ in range(count)]


def _leave_swarm(nodes: list[LabNode]) -> None:
    """Remove services, wait for their containers to go, leave the swarm: Docker then removes
    its sandboxes and netns itself."""
    clients = {}
    for node in nodes:  # short timeouts: a daemon may be half dead (its netns removed)
        with suppress(*DOCKER_GONE):
            clients[node.name] = docker.DockerClient(base_url=node.socket, timeout=5)
    try:
        if (mgr := clients.get(nodes[0].name)) is not None:
            with suppress(*DOCKER_GONE):
                for svc in mgr.services.list():
                    svc.remove()
        deadline = time.monotonic() + 10
        for client in clients.values():
            with suppress(*DOCKER_GONE):
                while client.containers.list(all=True) and time.monotonic() < deadline:
                    time.sleep(0.3)
        for node in reversed(nodes):
            if node.name in clients:
                with suppress(*DOCKER_GONE):
                    clients[node.name].swarm.leave(force=True)
    finally:
        for client in clients.values():
            client.close()


def down() -> list[str]:
    """Remove everything up() made and put back what Docker changed. Returns problems (none)."""
    st = _read_state()
    if st is None:
        return []
    nodes = [LabNode(**n) for n in st["nodes"]]
    before = hoststate.HostState.from_dict(st["host"])
    problems: list[str] = []
    _leave_swarm(nodes)
    for node in reversed(nodes):
        daemons.stop(node, problems)
    for node in nodes[1:]:
        if node.netns and Path("/var/run/netns", node.netns).exists():
            res = subprocess.run(["ip", "netns", "del", node.netns], capture_output=True,
                                 text=True, check=False)
            if res.returncode != 0:
                problems.append(f"ip netns del {node.netns}: {res.stderr.strip()}")
    hoststate.remove_links(before, (*hoststate.DOCKER_LINKS, VETH[0], VETH[1]), problems)
    hoststate.restore_firewall(before, problems)
    hoststate.restore_sysctls(before, problems)
    hoststate.unload_modules(before)
    hoststate.remove_cgroups([n.cgroup_parent for n in nodes], problems)
    # state.json goes with STATE_DIR: only once everything else is undone.
    hoststate.remove_paths(before, problems)
    for p in problems:
        log.warning("swarm lab down: %s", p)
    return problems
