"""`trace --nftrace` in the netns lab on the real kernel: a DROP on an iptables-nft host is
named from the kernel's nftables trace events (table, chain, rule handle and the rule's text);
an iptables-legacy drop, which has no trace events, keeps the rule counters' attribution. The
trace tables are gone again afterwards."""

from __future__ import annotations

import os
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest
from faults import ATTACH_S, READY, SWARMTRACE, injected, traced
from test_faults_lab import FAULTS, HOST

from tracer import lab as lab_mod
from tracer.lab.topology import CLIENT, PUBLISHED_PORT

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root: BPF, netns and nftables"),
    pytest.mark.skipif(not Path("/sys/kernel/btf/vmlinux").exists(), reason="kernel has no BTF"),
]

MESH = "192.168.100.1"  # the lab host's routing-mesh address
NAMED = {
    "docker-user-drop": "nftables trace: table ip filter, chain DOCKER-USER, rule handle ",
    "forward-policy-drop": "nftables trace: table ip filter, chain FORWARD, policy drop",
}


def _trace_tables() -> list[str]:
    out = subprocess.run(["ip", "netns", "exec", HOST, "nft", "list", "tables"],
                         capture_output=True, text=True, check=True).stdout
    return [line for line in out.splitlines() if "swarmtrace_" in line]


@pytest.mark.parametrize("name", [*NAMED, "legacy-forward-drop"])
def test_drop_named_by_nftables_trace(lab: lab_mod.LabInfo, name: str) -> None:
    fault = FAULTS[name]
    # The mesh address, not the port: other labs on this machine may use port 8080 too.
    with injected(fault.inject, fault.undo), \
            traced("--nftrace", "--addr", MESH, "--count", "2", "--timeout", "60") as reqs:
        assert _trace_tables(), "no trace table added in the lab's host netns"
        lab_mod.traffic("mesh", 2)
    assert _trace_tables() == []
    assert len(reqs) == 2
    for r in reqs:
        v = r["verdict"]
        assert (v["netns"], v["hop"], v["cause"]) == ("host", "drop", "forward-drop"), r
        if name in NAMED:
            assert NAMED[name] in v["evidence"], v
        else:  # iptables-legacy: no trace events, the counters still name the rule
            assert "nftables trace" not in v["evidence"] and fault.rule in v["evidence"], v
    if name == "docker-user-drop":
        assert "tcp dport 8080 counter drop (iptables: -A DOCKER-USER -p tcp -m tcp --dport 8080 " \
            "-j DROP)" in reqs[0]["verdict"]["evidence"], reqs[0]["verdict"]


def test_killed_tracers_table_removed_by_the_next(lab: lab_mod.LabInfo) -> None:
    """SIGKILL leaves no chance to clean up: the next --nftrace removes the dead one's table."""
    argv = [*SWARMTRACE, "trace", "--nftrace", "--addr", MESH]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stderr is not None
        err, deadline = "", time.monotonic() + ATTACH_S
        while READY not in err:
            assert time.monotonic() < deadline and proc.poll() is None, \
                f"trace did not attach within {ATTACH_S:.0f} s: {err}"
            if select.select([proc.stderr], [], [], 0.5)[0]:
                err += proc.stderr.readline()
        assert _trace_tables() == [f"table ip swarmtrace_{proc.pid}"]
    finally:
        proc.kill()
        proc.wait()
    assert _trace_tables() == [f"table ip swarmtrace_{proc.pid}"]
    res = subprocess.run([*argv, "--timeout", "1"], capture_output=True, text=True,
                         timeout=ATTACH_S + 30, check=False)
    assert res.returncode == 0, res.stderr
    assert _trace_tables() == []


# Two DOCKER-USER rules, each dropping the client ports of one range; a connection from each.
SPORT_RANGES = {40123: "40000:40999", 41234: "41000:41999"}
# Connects from a given port and gives up after a few SYN retransmissions.
CONNECT = ("import socket, sys\n"
           "s = socket.socket()\n"
           "s.bind(('', int(sys.argv[3])))\n"
           "s.settimeout(4)\n"
           "try:\n"
           "    s.connect((sys.argv[1], int(sys.argv[2])))\n"
           "except OSError:\n"
           "    pass\n")


def test_simultaneous_drops_each_named_by_its_own_flow(lab: lab_mod.LabInfo) -> None:
    """Two connections dropped in the same netns at the same time by two different rules:
    each verdict names the rule that dropped its own packets (the trace event's flow), not
    every rule that dropped something there meanwhile."""
    ipt = ["ip", "netns", "exec", HOST, "iptables"]
    rules = [["-p", "tcp", "--sport", r, "--dport", str(PUBLISHED_PORT), "-j", "DROP"]
             for r in SPORT_RANGES.values()]
    inject = ([*ipt, "-N", "DOCKER-USER"], [*ipt, "-I", "FORWARD", "-j", "DOCKER-USER"],
              *([*ipt, "-A", "DOCKER-USER", *rule] for rule in rules))
    undo = ([*ipt, "-D", "FORWARD", "-j", "DOCKER-USER"], [*ipt, "-F", "DOCKER-USER"],
            [*ipt, "-X", "DOCKER-USER"])
    with injected(inject, undo), \
            traced("--nftrace", "--addr", MESH, "--count", "2", "--timeout", "60") as reqs:
        clients = [subprocess.Popen(["ip", "netns", "exec", CLIENT, sys.executable, "-c",
                                     CONNECT, MESH, str(PUBLISHED_PORT), str(port)])
                   for port in SPORT_RANGES]
        for c in clients:
            assert c.wait(timeout=30) == 0
    assert sorted(int(r["client"].rsplit(":", 1)[1]) for r in reqs) == sorted(SPORT_RANGES)
    for r in reqs:
        mine = SPORT_RANGES[int(r["client"].rsplit(":", 1)[1])]
        v = r["verdict"]
        assert (v["netns"], v["hop"], v["cause"]) == ("host", "drop", "forward-drop"), r
        named = [rng for rng in SPORT_RANGES.values() if f"--sport {rng} " in v["evidence"]]
        assert named == [mine], v
