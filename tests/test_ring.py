"""The always-on ring recorder: only the windows around failed requests are kept, within SIZE."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from live_trace import stopped

from tracer import lab as lab_mod
from tracer.lab.refuse import refusing
from tracer.lab.topology import BACKENDS
from tracer.model import Request, Status
from tracer.pipeline import Pipeline
from tracer.source import Filter
from tracer.tracefile import ReplaySource
from tracer.tracefile.reader import open_trace
from tracer.tracefile.requests import trace_requests
from tracer.tracefile.ring import KEPT_PREFIX, SEGMENT_PREFIX, RingConfig, ring_recording
from tracer.tracefile.topology import trace_names

FIXTURE = Path(__file__).parent / "fixtures" / "lab_mesh_vip.swt"
SWARMTRACE = [sys.executable, "-m", "tracer"]


def test_a_kept_window_replays_its_request_and_nothing_far_from_it(tmp_path: Path) -> None:
    # Recorded events, a window of 50 ms each side around each request "kept" as if it failed:
    # the ring's cutting and merging, without a kernel.
    config = RingConfig(tmp_path, 64 << 20, before_s=0.05, after_s=0.05,
                        keep_on=frozenset({Status.OK}))
    seen: list[Request] = []
    with ReplaySource(FIXTURE) as src:
        pipe = Pipeline(src, trace_names(FIXTURE), src.header.lb_note)
        with ring_recording(pipe, config, Filter()) as ring:
            while not src.finished:
                reqs = pipe.poll(0)
                seen += reqs
                ring.observe(reqs)
            reqs = pipe.flush()
            seen += reqs
            ring.observe(reqs)
    kept = sorted(tmp_path.glob(f"{KEPT_PREFIX}*.swt"))
    assert not list(tmp_path.glob(f"{SEGMENT_PREFIX}*")), "the ring's segments outlive it"
    assert kept and len(kept) <= len(seen)
    found = {r.client for path in kept for r in trace_requests(path)}
    assert {r.client for r in seen} <= found, "a request's window lost the request"
    for path in kept:
        with open_trace(path) as reader:
            ts = [int(t) for chunk in reader.events() for t in chunk["ts_ns"]]
        assert max(ts) - min(ts) < 2e9, f"{path.name} holds more than its window"


# -- live: the netns lab, then backend-2 refusing ---------------------------------------------

@pytest.mark.root
@pytest.mark.skipif(os.geteuid() != 0, reason="needs root: BPF, netns and iptables")
@pytest.mark.skipif(not Path("/sys/kernel/btf/vmlinux").exists(), reason="kernel has no BTF")
def test_ring_keeps_only_failure_windows_within_its_size(
        tmp_path: Path, lab: lab_mod.LabInfo) -> None:
    ring_dir = tmp_path / "ring"
    size = 4 << 20
    proc = subprocess.Popen(
        [*SWARMTRACE, "trace", "--port", "8080", "-w", str(ring_dir), "--ring", str(size),
         "--keep-before", "1", "--keep-after", "1", "-q"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_ready(proc)
        healthy = list(lab_mod.iter_traffic("mesh", 6))
        assert all(a.ok for a in healthy), f"the lab failed before the fault: {healthy}"
        # A gap wider than the 1 s before-window: not a readiness wait, the test's subject is
        # that a window does not reach further back than asked.
        time.sleep(1.5)
        with refusing(BACKENDS[1]):
            faulty = list(lab_mod.iter_traffic("mesh", 6))
        refused = [a for a in faulty if not a.ok]
        assert refused, f"backend-2 refused nothing: {faulty}"
        # The window is written once its after-part (1 s) is recorded.
        _wait_for(lambda: bool(list(ring_dir.glob(f"{KEPT_PREFIX}*.swt"))), 30,
                  "no failure window written within 30 s")
    finally:
        _, err = stopped(proc)
    assert proc.returncode == 0, err
    kept = sorted(ring_dir.glob(f"{KEPT_PREFIX}*.swt"))
    assert not list(ring_dir.glob(f"{SEGMENT_PREFIX}*")), "ring segments left after exit"
    assert sum(p.stat().st_size for p in ring_dir.iterdir()) <= size
    reqs = [r for path in kept for r in trace_requests(path)]
    failed = {r.client.src for r in reqs if r.status is Status.REFUSED}
    assert {a.client for a in refused} <= failed, (
        f"refused {[a.client for a in refused]}, kept as refused {sorted(failed)}")
    # The healthy requests before the fault were rotated away, not kept.
    assert not {a.client for a in healthy} & {r.client.src for r in reqs}


def _wait_ready(proc: subprocess.Popen[str]) -> None:
    # `trace` prints "tracing with ..." once every probe is attached.
    assert proc.stderr is not None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if "tracing with" in line:
            return
        if not line and proc.poll() is not None:
            raise AssertionError(f"trace exited early (rc {proc.returncode})")
    raise AssertionError("trace did not attach within 60 s")


def _wait_for(done: Callable[[], bool], timeout_s: float, why: str) -> None:
    """Poll `done` until it holds; fail saying `why` when it never does."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if done():
            return
        time.sleep(0.2)
    raise AssertionError(why)
