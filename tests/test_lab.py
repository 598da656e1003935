"""The netns lab on the real kernel: real netns, veths, bridges, iptables rules and servers."""

from __future__ import annotations

import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from live_trace import stopped

from tracer import lab as lab_mod
from tracer.errors import LabError
from tracer.lab import servers
from tracer.lab.balancer import MESH_LB, VIP_LB
from tracer.lab.topology import BACKENDS, HOST, NAMESPACES, RUN_DIR, SBOX, VIP_CLIENT

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root: network namespaces and iptables"),
]

N = 10
NAMES = [ns.name for ns in NAMESPACES]


def existing_lab_netns() -> list[str]:
    return sorted(p.name for p in Path("/var/run/netns").glob("stlab-*") if p.name in NAMES)


def server_pids() -> dict[str, int]:
    return {b: pid for b in BACKENDS if (pid := servers.running_pid(b)) is not None}


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def assert_round_robin(answers: list[lab_mod.Answer], target: str, client_ip: str) -> None:
    assert len(answers) == N
    for a in answers:
        assert a.ok, a.error
        assert a.target == target
        assert a.client.startswith(f"{client_ip}:")
        assert a.body == f"Processed by container ID {a.backend}"
    names = [a.backend for a in answers]
    assert sorted(set(names)) == ["backend-1", "backend-2"]
    assert all(x != y for x, y in itertools.pairwise(names)), names
    assert len({a.client for a in answers}) == N, "each request must be a new connection"


def count(packets: dict[str, int], *parts: str) -> int:
    """Packet counter of the one rule whose text holds every part."""
    found = [n for rule, n in packets.items() if all(p in rule for p in parts)]
    assert len(found) == 1, (parts, packets)
    return found[0]


def test_up_is_idempotent(lab: lab_mod.LabInfo) -> None:
    pids = server_pids()
    again = lab_mod.up()
    assert again == lab
    assert server_pids() == pids
    assert [ns.name for ns in lab.netns] == NAMES
    for ns in lab.netns:
        assert ns.inode == os.stat(f"/var/run/netns/{ns.name}").st_ino
    assert lab.lb == ("ipvs" if lab_mod.has_ipvs() else "stand-in")
    if lab.lb == "stand-in":
        assert "IPVS stand-in: iptables round-robin DNAT" in lab.notes[0]


def test_nothing_in_the_root_netns(lab: lab_mod.LabInfo) -> None:
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True, check=True).stdout
    for name in ("docker_gwbridge", "veth-sbox", "veth-backend", "veth-client", "br0"):
        assert f" {name}" not in links and f" {name}@" not in links


def test_mesh_round_robin_through_dnat_mark_and_snat(lab: lab_mod.LabInfo) -> None:
    before = {
        (ns, table): lab_mod.rule_packets(ns, table)
        for ns in (HOST, SBOX, *BACKENDS)
        for table in ("nat", "mangle")
    }
    answers = lab_mod.traffic("mesh", N)
    assert_round_robin(answers, "192.168.100.1:8080", "192.168.100.2")

    def delta(ns: str, table: str, *parts: str) -> int:
        after = lab_mod.rule_packets(ns, table)
        return count(after, *parts) - count(before[(ns, table)], *parts)

    # The path really is host DNAT -> sbox mark -> LB -> SNAT -> task REDIRECT, once per request.
    assert delta(HOST, "nat", "DOCKER-INGRESS", "--to-destination 172.18.0.2:8080") == N
    assert delta(HOST, "nat", "PREROUTING", "-j DOCKER-INGRESS") == N
    assert delta(SBOX, "mangle", "--dport 8080", "0x105") >= 3 * N  # every packet of a request
    assert delta(SBOX, "nat", "POSTROUTING", "-o eth0", "--to-source 10.255.0.2") == N
    if lab.lb == "stand-in":
        for backend in MESH_LB.backends:
            assert delta(SBOX, "nat", "IPVS stand-in", f"{backend}:8080") == N // 2
    for backend in BACKENDS:
        assert delta(backend, "nat", "REDIRECT", "--to-ports 80") == N // 2


def test_vip_round_robin_through_mark(lab: lab_mod.LabInfo) -> None:
    mangle = lab_mod.rule_packets(VIP_CLIENT, "mangle")
    nat = lab_mod.rule_packets(VIP_CLIENT, "nat")
    answers = lab_mod.traffic("vip", N)
    assert_round_robin(answers, "10.0.0.9:80", "10.0.0.3")
    marked = count(lab_mod.rule_packets(VIP_CLIENT, "mangle"), "-d 10.0.0.9/32", "0x103")
    assert marked - count(mangle, "-d 10.0.0.9/32", "0x103") >= 3 * N
    if lab.lb == "stand-in":
        after = lab_mod.rule_packets(VIP_CLIENT, "nat")
        for backend in VIP_LB.backends:
            spec = ("IPVS stand-in", f"{backend}:80")
            assert count(after, *spec) - count(nat, *spec) == N // 2


def test_traffic_interval_and_flood(lab: lab_mod.LabInfo) -> None:
    start = time.monotonic()
    answers = lab_mod.traffic("mesh", 3, interval_s=0.2)
    assert [a.ok for a in answers] == [True] * 3
    assert time.monotonic() - start >= 0.4
    rate = lab_mod.flood("vip", 0.5, 4)
    assert rate > 10


def test_cli_traffic_lines_and_json(lab: lab_mod.LabInfo) -> None:
    cli = [sys.executable, "-m", "tracer", "lab", "traffic", "--count", "2"]
    text = subprocess.run(cli, capture_output=True, text=True, check=True, timeout=60).stdout
    lines = text.splitlines()
    assert len(lines) == 2
    for line in lines:
        assert " -> 192.168.100.1:8080  Processed by container ID backend-" in line
        assert line.startswith("192.168.100.2:")
    out = subprocess.run(
        [*cli, "--mode", "vip", "--json"], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    objs = [lab_mod.Answer(**json.loads(line)) for line in out.splitlines()]
    assert [a.target for a in objs] == ["10.0.0.9:80"] * 2 and all(a.ok for a in objs)


def test_down_removes_everything_and_is_idempotent(lab_session: None) -> None:
    lab_mod.up()
    pids = server_pids()
    assert len(pids) == 2
    removed = lab_mod.down()
    assert {f"netns {n}" for n in NAMES} <= set(removed)
    assert existing_lab_netns() == []
    assert not RUN_DIR.exists()
    assert not any(alive(pid) for pid in pids.values())
    assert lab_mod.status() is None
    assert lab_mod.down() == []


def test_traffic_while_down_says_how_to_fix(lab_session: None) -> None:
    lab_mod.down()
    with pytest.raises(LabError, match=r"the lab is not up: run `swarmtrace lab up`"):
        lab_mod.traffic("mesh", 1)


def test_down_after_a_crash_half_way(lab_session: None) -> None:
    """A server killed and a netns deleted behind the lab's back: status sees it, down cleans."""
    lab_mod.up()
    pids = server_pids()
    os.kill(pids[BACKENDS[0]], signal.SIGKILL)
    # The other server keeps its netns alive after the name is gone: down must still find it.
    subprocess.run(["ip", "netns", "delete", BACKENDS[1]], check=True)
    assert lab_mod.status() is None
    lab_mod.down()
    assert existing_lab_netns() == []
    assert not any(alive(pid) for pid in pids.values())
    assert not RUN_DIR.exists()


def test_up_rebuilds_a_half_built_lab_and_down_works_without_state(lab_session: None) -> None:
    lab_mod.up()
    subprocess.run(["ip", "netns", "delete", "stlab-ingress"], check=True)
    info = lab_mod.up()  # half-built: torn down and rebuilt
    assert [ns.name for ns in info.netns] == NAMES
    assert lab_mod.traffic("mesh", 2)[0].ok
    pids = server_pids()
    # A crashed run that lost its state: netns and servers are still found by name and netns.
    shutil.rmtree(RUN_DIR)
    assert lab_mod.status() is None
    lab_mod.down()
    assert existing_lab_netns() == []
    assert not any(alive(pid) for pid in pids.values())


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_interrupted_up_leaves_nothing(lab_session: None, sig: signal.Signals) -> None:
    lab_mod.down()
    proc = subprocess.Popen(
        [sys.executable, "-m", "tracer", "lab", "up"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 30
    # Interrupt once the build is under way (some netns exist), not before it starts.
    while not existing_lab_netns() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.005)
    _, err = stopped(proc, sig=sig)
    if proc.returncode == 0:
        pytest.skip("the build finished before the signal arrived")  # a very fast machine
    assert proc.returncode == 130, err
    assert existing_lab_netns() == []
    assert not RUN_DIR.exists()


def test_not_root_says_how_to_fix() -> None:
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/", "PYTHONDONTWRITEBYTECODE": "1"}
    for action in ("up", "down", "traffic"):
        proc = subprocess.run(
            ["runuser", "-u", "nobody", "--", sys.executable, "-m", "tracer", "lab", action],
            capture_output=True,
            text=True,
            env=env,
            cwd="/",
            timeout=60,
        )
        assert proc.returncode == 4, proc.stderr
        assert proc.stderr.strip() == "swarmtrace: the lab needs root: run with sudo"
