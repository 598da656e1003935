"""`swarmtrace trace` on the real kernel and the netns lab: what a user would check."""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from live_trace import SWARMTRACE, our_links, start_trace, stopped

from tracer import lab as lab_mod
from tracer.probes.core import bpf_object_path

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root: BPF, netns and iptables"),
    pytest.mark.skipif(not Path("/sys/kernel/btf/vmlinux").exists(), reason="kernel has no BTF"),
]

N = 10


@pytest.fixture
def traced_requests(lab: lab_mod.LabInfo, request: pytest.FixtureRequest) -> Iterator[
        tuple[list[dict], list[lab_mod.Answer]]]:
    mode = request.param
    proc = start_trace("--json", "--count", str(N), "--port", "8080", "--addr", "10.0.0.9",
                        "--timeout", "60")
    try:
        answers = lab_mod.traffic(mode, N)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    yield [json.loads(line) for line in out.splitlines()], answers


@pytest.mark.parametrize("traced_requests", ["mesh"], indirect=True)
def test_mesh_requests_match_answers(traced_requests: tuple[list[dict], list]) -> None:
    reqs, answers = traced_requests
    assert len(reqs) == N
    by_client = {r["client"]: r for r in reqs}
    for a in answers:
        assert a.ok, a.error
        r = by_client[a.client]
        assert r["entry"] == "192.168.100.1:8080"
        assert r["status"] == "ok"
        assert r["mode"] == "mesh"
        # The backend the trace names is the one whose body answered.
        assert r["backend"]["name"] == a.backend
        kinds = [(h["netns"], h["kind"]) for h in r["hops"]]
        assert ("host", "dnat") in kinds
        host_dnat = next(h for h in r["hops"] if h["kind"] == "dnat" and h["netns"] == "host")
        assert host_dnat["after"].endswith("-> 172.18.0.2:8080")
        mark = next(h for h in r["hops"] if h["kind"] == "mark")
        assert (mark["netns"], mark["mark"]) == ("ingress_sbox", "0x105")
        lb = next(h for h in r["hops"] if h["kind"] == "lb")
        assert lb["netns"] == "ingress_sbox"
        snat = next(h for h in r["hops"] if h["kind"] == "snat")
        assert snat["after"].startswith("10.255.0.2:")
        assert r["reply_ms"] is not None
    # Round robin: consecutive requests alternate between the two backends.
    names = [by_client[a.client]["backend"]["name"] for a in answers]
    assert set(names) == {"backend-1", "backend-2"}
    assert all(x != y for x, y in itertools.pairwise(names))


@pytest.mark.parametrize("traced_requests", ["vip"], indirect=True)
def test_vip_requests_match_answers(traced_requests: tuple[list[dict], list]) -> None:
    reqs, answers = traced_requests
    assert len(reqs) == N
    by_client = {r["client"]: r for r in reqs}
    for a in answers:
        r = by_client[a.client]
        assert r["entry"] == "10.0.0.9:80"
        assert r["mode"] == "vip"
        assert r["backend"]["name"] == a.backend
        mark = next(h for h in r["hops"] if h["kind"] == "mark")
        assert (mark["netns"], mark["mark"]) == ("vip-client", "0x103")
        lb = next(h for h in r["hops"] if h["kind"] == "lb")
        assert lb["after"].split(" -> ")[1] in ("10.0.0.10:80", "10.0.0.11:80")


def test_text_output_reads_like_the_path(lab: lab_mod.LabInfo) -> None:
    proc = start_trace("--count", "1", "--port", "8080", "--timeout", "60")
    answers = lab_mod.traffic("mesh", 1)
    out, err = stopped(proc, sig=None)
    assert proc.returncode == 0, err
    first = out.splitlines()[0]
    assert first.startswith(f"#1 client {answers[0].client} -> 192.168.100.1:8080 | host: DNAT -> "
                            "172.18.0.2:8080 | ingress_sbox: mark 0x105, LB -> ")
    assert f"| {answers[0].backend} (" in first


def test_ctrl_c_and_sigterm_detach_everything(lab: lab_mod.LabInfo) -> None:
    for sig in ("INT", "TERM"):
        proc = start_trace("--port", "8080")
        stopped(proc, sig=getattr(signal, f"SIG{sig}"))
        assert proc.returncode in (0, 130)
        assert our_links() == 0


def test_errors_are_one_line(tmp_path: Path) -> None:
    missing = subprocess.run([*SWARMTRACE, "trace", "--count", "1"], capture_output=True,
                             text=True, env={**os.environ, "SWARMTRACE_BPF_DIR": str(tmp_path)})
    assert missing.returncode != 0
    assert missing.stderr.strip().count("\n") == 0
    assert "run scripts/setup" in missing.stderr
    not_root = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                               *SWARMTRACE, "trace"], capture_output=True, text=True,
                              cwd="/")
    assert not_root.returncode != 0
    assert "run as root" in not_root.stderr and "CAP_SYS_ADMIN" in not_root.stderr
    assert not_root.stderr.strip().count("\n") == 0
    assert bpf_object_path().exists()


def test_pre_6_4_path_without_netfilter_programs(lab: lab_mod.LabInfo) -> None:
    """Kernels before 6.4 have no BPF netfilter programs: device events carrying conntrack
    must still give each request its NAT hops and the backend that answered."""
    from tracer.enrich import open_names
    from tracer.pipeline import Pipeline
    from tracer.probes.core import CoreSource
    from tracer.source import Filter

    with CoreSource(Filter(ports=(8080,)), netfilter=False) as src, open_names() as names:
        pipe = Pipeline(src, names)
        answers = lab_mod.traffic("mesh", 4)
        got = []
        deadline = time.monotonic() + 20
        while len(got) < 4 and time.monotonic() < deadline:
            got += pipe.poll(0.2)
    assert src.info.notes and "6.4" in src.info.notes[0]
    by_client = {r.client.src: r for r in got}
    for a in answers:
        r = by_client[a.client]
        assert r.backend_name == a.backend
        kinds = {(h.where, str(h.kind)) for h in r.hops}
        assert {("host", "dnat"), ("ingress_sbox", "mark"), ("ingress_sbox", "lb"),
                ("ingress_sbox", "snat")} <= kinds
