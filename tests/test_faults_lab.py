"""Faults injected into the netns lab on the real kernel: `check` names each one before any
traffic, and every request sent through it gets the verdict that says where and why.

Each fault is undone in a finally block, also when the test fails; the lab fixture rebuilds
the lab if a test left it broken."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from faults import check, injected, run, traced

from tracer import lab as lab_mod
from tracer import slowdown
from tracer.enrich.nsenter import entered
from tracer.lab import servers
from tracer.lab.balancer import MESH_LB, has_ipvs
from tracer.lab.topology import BACKENDS, CLIENT, NETNS_DIR, NODE_ADDR, PUBLISHED_PORT

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root: BPF, netns and iptables"),
    pytest.mark.skipif(not Path("/sys/kernel/btf/vmlinux").exists(), reason="kernel has no BTF"),
]

HOST, SBOX = "stlab-host", "stlab-ingress_sbox"
CT_MAX = Path("/proc/sys/net/netfilter/nf_conntrack_max")
LAB = "netns lab"
STALE = "10.255.0.99"  # on the ingress network, and no task's


def _in(netns: str, *argv: str) -> list[str]:
    return ["ip", "netns", "exec", netns, *argv]


@dataclass(frozen=True)
class Fault:
    inject: tuple[list[str], ...]
    undo: tuple[list[str], ...]
    finding: tuple[str, str]  # (sandbox, words in the finding's `what`)
    verdict: tuple[str, str, str]  # (netns, hop, cause) of every request sent through it
    rule: str = ""  # the netfilter rule (or policy) the verdict names


def _both_backends(*argv: str) -> tuple[list[str], ...]:
    return tuple(_in(b, *argv) for b in BACKENDS)


FAULTS = {
    "forward-policy-drop": Fault(
        (_in(HOST, "iptables", "-P", "FORWARD", "DROP"),),
        (_in(HOST, "iptables", "-P", "FORWARD", "ACCEPT"),),
        ("host", "FORWARD of tcp/8080"), ("host", "drop", "forward-drop"),
        "filter: FORWARD policy DROP"),
    "docker-user-drop": Fault(
        (_in(HOST, "iptables", "-N", "DOCKER-USER"),
         _in(HOST, "iptables", "-I", "FORWARD", "-j", "DOCKER-USER"),
         _in(HOST, "iptables", "-A", "DOCKER-USER", "-p", "tcp", "--dport", "8080", "-j",
             "DROP")),
        (_in(HOST, "iptables", "-D", "FORWARD", "-j", "DOCKER-USER"),
         _in(HOST, "iptables", "-F", "DOCKER-USER"),
         _in(HOST, "iptables", "-X", "DOCKER-USER")),
        ("host", "FORWARD of tcp/8080"), ("host", "drop", "forward-drop"),
        "filter: -A DOCKER-USER -p tcp -m tcp --dport 8080 -j DROP"),
    "legacy-forward-drop": Fault(
        # The same kind of rule in the other iptables back end (iptables-legacy hosts).
        (_in(HOST, "iptables-legacy", "-A", "FORWARD", "-p", "tcp", "--dport", "8080", "-j",
             "DROP"),),
        (_in(HOST, "iptables-legacy", "-D", "FORWARD", "-p", "tcp", "--dport", "8080", "-j",
             "DROP"),),
        ("host", "FORWARD of tcp/8080"), ("host", "drop", "forward-drop"),
        "legacy filter: -A FORWARD -p tcp -m tcp --dport 8080 -j DROP"),
    "strict-rp-filter": Fault(
        # Asymmetric: the sandbox's route back to the clients now leaves by eth0.
        (_in(SBOX, "ip", "route", "add", "192.168.100.0/24", "dev", "eth0"),
         _in(SBOX, "sysctl", "-qw", "net.ipv4.conf.all.rp_filter=1",
             "net.ipv4.conf.eth1.rp_filter=1")),
        (_in(SBOX, "ip", "route", "del", "192.168.100.0/24", "dev", "eth0"),
         _in(SBOX, "sysctl", "-qw", "net.ipv4.conf.all.rp_filter=0",
             "net.ipv4.conf.eth1.rp_filter=0")),
        ("ingress_sbox", "rp_filter on eth1"), ("ingress_sbox", "drop", "rp-filter")),
    "ip-forward-off": Fault(
        (_in(SBOX, "sysctl", "-qw", "net.ipv4.ip_forward=0"),),
        (_in(SBOX, "sysctl", "-qw", "net.ipv4.ip_forward=1"),),
        ("ingress_sbox", "net.ipv4.ip_forward"), ("ingress_sbox", "drop", "forwarding-off")),
    "task-never-answers": Fault(
        _both_backends("iptables", "-A", "INPUT", "-p", "tcp", "--dport", "80", "-j", "DROP"),
        _both_backends("iptables", "-D", "INPUT", "-p", "tcp", "--dport", "80", "-j", "DROP"),
        ("backend-1", "INPUT of tcp/80"), ("backend-", "drop", "task-firewall"),
        "filter: -A INPUT -p tcp -m tcp --dport 80 -j DROP"),
}


def test_healthy_lab_check_prints_nothing_wrong(lab: lab_mod.LabInfo) -> None:
    rc, findings, text = check(LAB)
    assert (rc, findings) == (0, []), text
    assert "netns lab" in text and "nothing wrong" in text


@pytest.mark.parametrize("name", list(FAULTS))
def test_fault_is_checked_then_explained(lab: lab_mod.LabInfo, name: str) -> None:
    fault = FAULTS[name]
    with injected(fault.inject, fault.undo):
        rc, findings, text = check(LAB)
        sandbox, what = fault.finding
        assert rc == 1, text
        assert any(f["sandbox"] == sandbox and what in f["what"] for f in findings), text
        with traced("--port", "8080", "--count", "2", "--timeout", "60") as requests:
            lab_mod.traffic("mesh", 2)
    assert len(requests) == 2
    for r in requests:
        assert r["status"] != "ok"
        v = r["verdict"]
        netns, hop, cause = fault.verdict
        assert (v["netns"].startswith(netns), v["hop"], v["cause"]) == (True, hop, cause), r
        assert fault.rule in v["evidence"], r
    assert check(LAB)[:2] == (0, [])


def test_full_conntrack_table(lab: lab_mod.LabInfo) -> None:
    """nf_conntrack_max is one for the whole kernel: kept tiny only while the requests run."""
    before = CT_MAX.read_text()
    try:
        CT_MAX.write_text("1")
        _, findings, text = check(LAB)
        assert any(f["sandbox"] == "host" and f["what"] == "net.netfilter.nf_conntrack_max"
                   for f in findings), text
        with traced("--port", "8080", "--count", "2", "--timeout", "60") as requests:
            lab_mod.traffic("mesh", 2)
    finally:
        CT_MAX.write_text(before)
    for r in requests:
        v = r["verdict"]
        assert (v["netns"], v["hop"], v["cause"]) == ("host", "drop", "conntrack-full"), r


def test_task_that_refuses_against_one_that_never_answers(lab: lab_mod.LabInfo) -> None:
    """backend-1's process is stopped (RST); backend-2 drops silently (no answer at all)."""
    pid = servers.running_pid(BACKENDS[0])
    assert pid is not None
    silent = _in(BACKENDS[1], "iptables", "-{}", "INPUT", "-p", "tcp", "--dport", "80", "-j",
                 "DROP")
    try:
        servers.stop({pid})
        run([a.format("A") for a in silent])
        _, findings, text = check(LAB)
        assert any(f["sandbox"] == "backend-1" and "a listener on tcp/80" in f["what"]
                   for f in findings), text
        assert any(f["sandbox"] == "backend-2" and "INPUT of tcp/80" in f["what"]
                   for f in findings), text
        with traced("--port", "8080", "--count", "2", "--timeout", "60") as requests:
            lab_mod.traffic("mesh", 2)
    finally:
        run([a.format("D") for a in silent], check=False)
        if servers.running_pid(BACKENDS[0]) is None:
            servers.spawn(BACKENDS[0])
            servers.wait_ready((BACKENDS[0],))
    by_backend = {r["backend"]["name"]: r for r in requests}
    refused, silent_req = by_backend["backend-1"], by_backend["backend-2"]
    assert refused["status"] == "refused"
    assert (refused["verdict"]["netns"], refused["verdict"]["cause"]) == ("backend-1", "refused")
    assert silent_req["status"] != "ok"
    assert (silent_req["verdict"]["netns"], silent_req["verdict"]["cause"]) == \
        ("backend-2", "task-firewall")


@pytest.mark.skipif(not has_ipvs(), reason="needs IPVS: tests/test_faults_vm.py runs it in the "
                    "stock-kernel VM lab")
def test_stale_ipvs_real_server(lab: lab_mod.LabInfo) -> None:
    """(a) The mesh's IPVS service gets a real server no task has, as after a task died."""
    ipvsadm = _in(SBOX, "ipvsadm")
    dest = ["-f", str(MESH_LB.fwmark), "-r", f"{STALE}:0"]
    with injected(([*ipvsadm, "-a", *dest, "-m"],), ([*ipvsadm, "-d", *dest],)):
        rc, findings, text = check(LAB)
        assert rc == 1
        assert any(f["sandbox"] == "ingress_sbox" and f["what"].startswith(
            f"IPVS real server {STALE}") and "stale backend" in f["actual"]
            for f in findings), text
        # Round robin over three real servers: one request in three meets the stale one.
        with traced("--port", "8080", "--count", "3", "--timeout", "90") as requests:
            lab_mod.traffic("mesh", 3)
    stale = [r for r in requests if r.get("verdict", {}).get("cause") == "stale-backend"]
    assert len(stale) == 1, [(r["status"], r["backend"], r.get("verdict"),
                              [(h["netns"], h["kind"], h.get("after")) for h in r["hops"]])
                             for r in requests]
    v = stale[0]["verdict"]
    assert (v["netns"], v["hop"]) == ("ingress_sbox", "lb") and STALE in v["evidence"]


def _ipvs_timeouts() -> list[str]:
    out = subprocess.run(_in(SBOX, "ipvsadm", "-L", "--timeout"), capture_output=True,
                         text=True, check=True).stdout
    m = re.search(r"\(tcp tcpfin udp\): (\d+) (\d+) (\d+)", out)
    assert m, out
    return list(m.groups())


def _ipvs_entry(client: str) -> bool:
    """Whether ingress_sbox's IPVS still holds a connection from client (ip:port)."""
    out = subprocess.run(_in(SBOX, "ipvsadm", "-L", "-n", "-c"), capture_output=True,
                         text=True, check=True).stdout
    return any(line.split()[3:4] == [client] for line in out.splitlines())


@pytest.mark.skipif(not has_ipvs(), reason="needs IPVS: tests/test_faults_vm.py runs it in the "
                    "stock-kernel VM lab")
def test_ipvs_idle_timeout_cuts_an_idle_connection(lab: lab_mod.LabInfo) -> None:
    """(h) IPVS forgets a connection idle longer than its tcp timeout (900 s by default, 2 s
    here); the connection's next packet reaches ingress_sbox's own stack, which resets it."""
    before = _ipvs_timeouts()
    ipvsadm = _in(SBOX, "ipvsadm", "--set")
    with injected(([*ipvsadm, "2", *before[1:]],), ([*ipvsadm, *before],)):
        rc, findings, text = check(LAB)
        assert rc == 1
        assert any(f["sandbox"] == "ingress_sbox" and f["what"] == "IPVS tcp idle timeout"
                   and f["actual"].startswith("2 s") and "moby#31208" in f["issue"]
                   for f in findings), text
        with traced("--port", str(PUBLISHED_PORT), "--count", "2", "--timeout", "120") \
                as requests:
            with entered(NETNS_DIR / CLIENT):
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            with sock:
                sock.settimeout(slowdown.scaled(10.0))
                sock.connect((NODE_ADDR, PUBLISHED_PORT))
                client = "{}:{}".format(*sock.getsockname())
                # Idle until IPVS forgot it (readiness: its connection table, not a clock).
                deadline = time.monotonic() + slowdown.scaled(60.0)
                while _ipvs_entry(client):
                    assert time.monotonic() < deadline, f"IPVS kept {client} for 60 s"
                    time.sleep(0.5)
                sock.sendall(b"GET / HTTP/1.0\r\n\r\n")
                with pytest.raises(ConnectionResetError):
                    sock.recv(4096)
    assert check(LAB)[:2] == (0, [])
    opened, cut = sorted((r for r in requests if r["client"] == client),
                         key=lambda r: r["start_ns"])
    assert opened["status"] == "ok", opened
    v = cut["verdict"]
    assert (v["netns"], v["cause"]) == ("ingress_sbox", "idle-timeout"), cut
    assert "moby#31208" in v["hint"] and "keepalive" in v["hint"], v
