"""`trace --nftrace` in the netns lab on the real kernel: a DROP on an iptables-nft host is
named from the kernel's nftables trace events (table, chain, rule handle and the rule's text);
an iptables-legacy drop, which has no trace events, keeps the rule counters' attribution. The
trace tables are gone again afterwards."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from faults import injected, traced
from test_faults_lab import FAULTS, HOST

from tracer import lab as lab_mod

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
