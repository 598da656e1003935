"""`swarmtrace demo` (README command 1) on the real kernel: live requests through the netns lab,
then nothing left behind."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root: BPF, netns and iptables"),
    pytest.mark.skipif(not Path("/sys/kernel/btf/vmlinux").exists(), reason="kernel has no BTF"),
]


def _st_links() -> int:
    progs = {p["id"]: p.get("name", "") for p in json.loads(subprocess.run(
        ["bpftool", "prog", "show", "--json"], capture_output=True, text=True, check=True).stdout)}
    links = json.loads(subprocess.run(["bpftool", "link", "list", "--json"], capture_output=True,
                                      text=True, check=True).stdout)
    return sum(progs.get(link.get("prog_id"), "").startswith("st_") for link in links)


def test_demo_shows_mesh_and_vip_requests_then_cleans_up() -> None:
    r = subprocess.run([sys.executable, "-m", "tracer", "demo", "--text", "--count", "6",
                        "--interval", "0.3"], capture_output=True, text=True, timeout=240)
    assert r.returncode == 0, r.stderr[-2000:]
    summaries = [line for line in r.stdout.splitlines() if line.startswith("#")]
    assert len(summaries) == 6, r.stdout
    # Every request reached a lab backend and was answered, through the mesh or the VIP.
    assert all(re.search(r"\| backend-\d \(.*\) \| reply [\d.]+ ms$", s) for s in summaries), \
        summaries
    assert any("ingress_sbox" in s for s in summaries) and any("vip-client" in s
                                                               for s in summaries)
    assert not [p for p in Path("/var/run/netns").glob("stlab-*")]
    assert _st_links() == 0
