"""The swarm lab and DockerNames on a real 2-node swarm (two real dockerds, real VXLAN).

One swarm for the whole module; the last tests stop a daemon and take the lab down.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest
from live_trace import stopped
from swarm_fixture import dnsrr_spread, vote_tasks

from tracer.enrich.docker_names import DockerNames
from tracer.enrich.history import recorded_names
from tracer.enrich.ipvs import NO_IPVS_MESSAGE, ipvs_available
from tracer.enrich.netns_names import nsfs_inode
from tracer.lab import swarm
from tracer.lab.swarm.daemons import DOCKERD, foreign_dockerd
from tracer.lab.swarm.hoststate import mounts_under
from tracer.lab.swarm.layout import DATA_DIR, STATE_DIR, lab_nodes

pytestmark = [
    pytest.mark.docker,
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root: dockerd, netns, iptables"),
    pytest.mark.skipif(not DOCKERD.exists(), reason="docker.io is not installed (scripts/setup)"),
]
needs_ipvs = pytest.mark.skipif(
    not ipvs_available(),
    reason=f"{NO_IPVS_MESSAGE} (tests/test_swarm_vm.py runs VIP and mesh there)")


def _rules() -> set[str]:
    out = set()
    for fw in ("iptables", "ip6tables"):
        for table in ("filter", "nat", "mangle", "raw"):
            res = subprocess.run([fw, "-w", "-t", table, "-S"], capture_output=True, text=True,
                                 check=False)
            out |= {f"{fw}/{table} {line}" for line in res.stdout.splitlines()}
    return out


def _machine() -> dict[str, object]:
    """What the lab may touch, in a comparable form."""
    return {
        "links": sorted(p.name for p in Path("/sys/class/net").iterdir()
                        if p.name.startswith(("docker", "stlab-n", "veth"))),
        "netns": sorted(p.name for p in Path("/var/run/netns").glob("stlab-node*")),
        "docker_rules": sorted(r for r in _rules() if "docker" in r.lower()),
        "policies": sorted(r for r in _rules() if " -P " in r),
        "ip_forward": Path("/proc/sys/net/ipv4/ip_forward").read_text(),
        "dirs": [p.exists() for p in (STATE_DIR, DATA_DIR, Path("/etc/docker/key.json"),
                                      Path("/var/run/docker.sock"))],
        "cgroups": sorted(str(p) for p in Path("/sys/fs/cgroup").glob("*/stlab-node*")),
    }


@pytest.fixture(scope="module")
def before() -> dict[str, object]:
    if (pid := foreign_dockerd(lab_nodes(2))) is not None:
        pytest.skip(f"a dockerd the lab did not start is running (pid {pid})")
    if swarm.load() is not None:
        pytest.skip("a swarm lab is already up: `swarmtrace swarmlab down` first")
    return _machine()


@pytest.fixture(scope="module")
def lab(before: dict[str, object]) -> Iterator[swarm.SwarmLab]:
    t0 = time.monotonic()
    lab = swarm.up(nodes=2)
    logging.getLogger(__name__).info("swarm lab up in %.1f s", time.monotonic() - t0)
    try:
        yield lab
    finally:
        swarm.down()


@pytest.fixture
def clients(lab: swarm.SwarmLab) -> Iterator[dict[str, docker.DockerClient]]:
    with lab.open_clients() as cs:
        yield cs


def _dockerd_pid(node: swarm.LabNode) -> int:
    return int((STATE_DIR / f"{node.name}.pid").read_text())


def test_lab_is_a_two_node_swarm(lab: swarm.SwarmLab, clients: dict[str, docker.DockerClient]
                                 ) -> None:
    mgr = clients["node1"]
    assert sorted(n.attrs["Description"]["Hostname"] for n in mgr.nodes.list()) == ["node1",
                                                                                   "node2"]
    assert ("vote-vip" in lab.services) == lab.ipvs
    # One vote task per node: half the requests cross nodes over VXLAN.
    assert sorted(node for _, _, node in vote_tasks(clients).values()) == ["node1", "node2"]


def test_names_match_docker_inspect(lab: swarm.SwarmLab,
                                    clients: dict[str, docker.DockerClient]) -> None:
    now = time.monotonic_ns()
    with DockerNames([n.socket for n in lab.nodes]) as names:
        assert sorted(names.nodes) == ["node1", "node2"]
        for node in lab.nodes:
            pid = _dockerd_pid(node)
            for ct in clients[node.name].containers.list():
                key = ct.attrs["NetworkSettings"]["SandboxKey"]
                ino = nsfs_inode(Path(f"/proc/{pid}/root{key}"))
                assert ino is not None
                ns = names.netns(ino, now)
                task = ct.labels["com.docker.swarm.task.name"]
                assert ns is not None and (ns.task, ns.container, ns.node) == (
                    task, ct.id[:12], node.name)
                assert ns.service == ct.labels["com.docker.swarm.service.name"]
                for net, ep in ct.attrs["NetworkSettings"]["Networks"].items():
                    a = names.addr(ep["IPAddress"], now)
                    assert a is not None and (a.kind, a.task, a.container, a.network, a.node) == (
                        "task", task, ct.id[:12], net, node.name)
            host = names.netns(os.stat(f"/proc/{pid}/ns/net").st_ino, now)
            assert host is not None and (host.kind, host.node) == ("host", node.name)
        kinds = {(ns.node, ns.kind) for ino in names.history.keys("netns")
                 if (ns := names.netns(int(ino), now)) is not None}  # type: ignore[call-overload]
        for name in ("node1", "node2"):
            assert {(name, k) for k in ("ingress_sbox", "lb", "overlay", "container")} <= kinds
        lb = names.addr(lab.nodes[1].addr, now)
        assert lb is not None and (lb.node, lb.netns) == ("node2", "host")
        overlay = clients["node1"].networks.get("overlay1").attrs
        vni = int(overlay["Options"]["com.docker.network.driver.overlay.vxlanid_list"])
        assert names.network_vni("overlay1", now) == vni


def test_dnsrr_answers_come_from_both_tasks(lab: swarm.SwarmLab,
                                            clients: dict[str, docker.DockerClient]) -> None:
    answers = dnsrr_spread(lab, least=12)
    assert all(a.ok for a in answers), [a.text for a in answers if not a.ok]
    expected = {cid for _, cid, _ in vote_tasks(clients).values()}
    assert {a.container for a in answers} == expected


def test_trace_service_shows_its_requests_only(lab: swarm.SwarmLab,
                                               clients: dict[str, docker.DockerClient]) -> None:
    """`trace --service vote`: the filter comes from Docker (vote's task addresses, and DNS: a
    DNS round-robin service has no VIP and publishes no port), and shows vote's requests with
    the DNS answers that spread them."""
    proc = subprocess.Popen([sys.executable, "-m", "tracer", "trace", "--service", "vote",
                             "--json", "--timeout", "120"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    notes = []
    for line in proc.stderr:
        notes.append(line)
        if line.startswith("swarmtrace: tracing with"):
            break
    tasks = vote_tasks(clients)
    assert any(line.startswith("swarmtrace: service vote: ports 53, addresses ") and
               all(ip in line for ip in tasks) for line in notes), notes
    swarm.traffic("dnsrr", 4)
    time.sleep(1)
    out, err = stopped(proc)
    assert proc.returncode == 0, err
    reqs = [json.loads(line) for line in out.splitlines()]
    vote = [q for q in reqs if q["mode"] == "dnsrr"]
    assert len(vote) == 4 and {q["mode"] for q in reqs} == {"dns", "dnsrr"}, reqs
    for q in vote:
        assert (q["service"], q["status"]) == ("vote", "ok")
        assert q["backend"]["addr"].split(":")[0] in tasks
        picked = [h["detail"] for h in q["hops"] if h["kind"] == "dns"]
        assert picked and picked[0].startswith("vote -> "), q["hops"]


def test_names_survive_service_update(lab: swarm.SwarmLab,
                                      clients: dict[str, docker.DockerClient]) -> None:
    old = vote_tasks(clients)
    with DockerNames([n.socket for n in lab.nodes]) as names:
        t_old = time.monotonic_ns()
        clients["node1"].services.get("vote").force_update()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            new = vote_tasks(clients)
            if len(new) == 2 and not {t for t, _, _ in new.values()} & {t for t, _, _ in
                                                                        old.values()}:
                now = time.monotonic_ns()
                got = {ip: names.addr(ip, now) for ip in new}
                if all(a is not None and a.task == new[ip][0] for ip, a in got.items()):
                    break
            time.sleep(0.5)
        else:
            pytest.fail(f"names did not follow the update: {new} vs {got}")
        replay = recorded_names(names.snapshot())
        for ip, (task, cid, node) in old.items():
            for resolver in (names, replay):
                a = resolver.addr(ip, t_old)
                assert a is not None and (a.task, a.container, a.node) == (task, cid, node)
    answers = dnsrr_spread(lab, least=8)
    assert {a.container for a in answers} == {cid for _, cid, _ in new.values()}


@needs_ipvs
def test_vip_answers_come_from_both_tasks(lab: swarm.SwarmLab,
                                          clients: dict[str, docker.DockerClient]) -> None:
    answers = swarm.traffic("vip", 12)
    assert all(a.ok for a in answers)
    assert len({a.container for a in answers}) == 2
    with DockerNames([n.socket for n in lab.nodes]) as names:
        vips = clients["node1"].services.get("vote-vip").attrs["Endpoint"]["VirtualIPs"]
        for vip in vips:
            a = names.addr(vip["Addr"].split("/")[0], time.monotonic_ns())
            assert a is not None and (a.kind, a.service) == ("vip", "vote-vip")


@needs_ipvs
def test_mesh_answers_and_fwmark_names(lab: swarm.SwarmLab) -> None:
    answers = swarm.traffic("mesh", 12)
    assert all(a.ok for a in answers)
    assert len({a.container for a in answers}) == 2
    with DockerNames([n.socket for n in lab.nodes]) as names:
        now = time.monotonic_ns()
        assert names.published_port(8080, now) == "vote-vip"
        marks = [k for k in names.history.keys("fwmarks")
                 if names.fwmark(k[0], k[1], now) == "vote-vip"]  # type: ignore[index]
        assert marks, "no MARK rule in ingress_sbox names vote-vip"


def test_names_keep_working_when_dockerd_stops(lab: swarm.SwarmLab,
                                               clients: dict[str, docker.DockerClient],
                                               caplog: pytest.LogCaptureFixture) -> None:
    tasks = vote_tasks(clients)
    with caplog.at_level(logging.WARNING, logger="tracer.enrich.docker_daemons"), \
            DockerNames([n.socket for n in lab.nodes], poll_s=0.3) as names:
        t_before = time.monotonic_ns()
        node2 = lab.nodes[1]
        os.kill(_dockerd_pid(node2), signal.SIGTERM)
        probe = f"sttest-after{os.getpid()}"
        subprocess.run(["ip", "netns", "add", probe], check=True)
        try:
            deadline = time.monotonic() + 30
            while names.nodes != ["node1"] and time.monotonic() < deadline:
                time.sleep(0.3)
            assert names.nodes == ["node1"]
            time.sleep(3)  # reconnect attempts meanwhile must stay quiet
            names.refresh()
            now = time.monotonic_ns()
            for ip, (task, _cid, node) in tasks.items():
                a = names.addr(ip, t_before)
                assert a is not None and (a.task, a.node) == (task, node)
            ino = nsfs_inode(Path("/var/run/netns") / probe)
            ns = names.netns(ino or 0, now)
            assert ns is not None and ns.name == probe  # the netns layer goes on
        finally:
            subprocess.run(["ip", "netns", "del", probe], check=False)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]


def test_down_leaves_the_machine_as_it_was(lab: swarm.SwarmLab,
                                           before: dict[str, object]) -> None:
    assert swarm.down() == []
    assert _machine() == before
    assert not mounts_under([STATE_DIR, DATA_DIR])
    assert not [p for p in Path("/proc").iterdir() if p.name.isdigit() and
                str(STATE_DIR).encode() in _cmdline(p)]
    assert swarm.load() is None


def _cmdline(p: Path) -> bytes:
    try:
        return (p / "cmdline").read_bytes()
    except OSError:
        return b""
