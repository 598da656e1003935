"""Issue 13, the live side under stress (run with `scripts/test --soak tests/test_soak.py`,
holding the lab lock): the ring buffer overflows, the disk fills while recording, the tracer
is killed, two tracers run at once. Each prints its figures on a `soak:` line."""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from live_trace import LAB_LINKS, SWARMTRACE, Running, our_links, start_trace, stopped

from tracer import lab as lab_mod
from tracer import leftovers
from tracer.errors import EXIT_TRACE_DAMAGED
from tracer.tracefile import open_trace

pytestmark = [
    pytest.mark.root,
    pytest.mark.soak,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root: BPF, netns and iptables"),
    pytest.mark.skipif(not Path("/sys/kernel/btf/vmlinux").exists(), reason="kernel has no BTF"),
]

FILTER = ("--port", "8080", "--addr", "10.0.0.9")


def _traced(requests: list[dict[str, object]], answers: list[lab_mod.Answer]) -> None:
    """Every answer is a request with its client, answered by the backend that answered."""
    by_client = {r["client"]: r for r in requests}
    for a in answers:
        assert a.ok, a.error
        r = by_client.get(a.client)
        assert r is not None, f"{a.client} not traced"
        assert r["status"] == "ok" and r["backend"]["name"] == a.backend, r  # type: ignore[index]


def _events_in(path: Path) -> int:
    if not path.exists():  # the file is made once the probes are attached
        return 0
    with open_trace(path, report=False) as reader:
        return sum(len(e) for e in reader.events())


def _links_gone(timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while our_links() and time.monotonic() < deadline:
        time.sleep(0.2)
    return our_links() == 0


def test_ring_overflow_is_counted_per_cpu_and_tracing_recovers(lab: lab_mod.LabInfo) -> None:
    from tracer.enrich import open_names
    from tracer.pipeline import Pipeline
    from tracer.probes.core import CoreSource
    from tracer.source import Filter

    # A 64 KiB ring (~740 events) that nobody reads while the mesh is flooded.
    with CoreSource(Filter(ports=(8080,), addrs=("10.0.0.9",)), ring_bytes=64 << 10) as src, \
            open_names() as names:
        rate = lab_mod.flood("mesh", 2.0, 4)
        stats = src.stats()
        per_cpu = {k: v for k, v in stats.extra.items() if k.startswith("lost_cpu")}
        print(f"soak: ring overflow: {rate:.0f} req/s for 2 s, {stats.lost} events lost, "
              f"per CPU {per_cpu}")
        assert stats.lost > 0 and sum(per_cpu.values()) == stats.lost
        pipe = Pipeline(src, names)
        drained = pipe.drain()  # what the ring held: requests around the loss
        marked = [r for r in drained if r.missing]
        answers = lab_mod.traffic("mesh", 5)
        got: list[dict[str, object]] = []
        deadline = time.monotonic() + 20
        while len(got) < 5 and time.monotonic() < deadline:
            got += [r.to_json() for r in pipe.poll(0.2)]
    print(f"soak: ring overflow: {len(marked)} of {len(drained)} requests read after the loss "
          f"marked incomplete: {marked[0].missing if marked else None}")
    assert marked and all("events lost in the kernel" in r.missing[0] for r in marked)
    _traced(got, answers)  # tracing recovered: the next requests are whole
    assert not any(r.get("incomplete") for r in got), got


@pytest.fixture
def small_disk() -> Iterator[Path]:
    """A tmpfs with 48 KiB free."""
    mnt = Path(tempfile.mkdtemp(prefix="swt-soak-"))
    try:
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m,mode=0700", "swarmtrace-soak",
                        str(mnt)], check=True, capture_output=True)
        with open(mnt / "filler", "wb") as f:
            f.write(bytes((1 << 20) - (48 << 10)))
        yield mnt
    finally:
        subprocess.run(["umount", str(mnt)], check=False, capture_output=True)
        mnt.rmdir()


def test_disk_full_while_recording(lab: lab_mod.LabInfo, small_disk: Path) -> None:
    path = small_disk / "rec.swt"
    tracer = Running(start_trace("--json", *FILTER, "-w", str(path), "--timeout", "120"))
    try:
        # First some requests that fit: the file must hold whole event records before the
        # disk fills (the writer flushes every second).
        lab_mod.traffic("mesh", 20)
        tracer.wait_for("event records on disk", lambda: _events_in(path) > 0)
        rate = lab_mod.flood("mesh", 3.0, 4)
        tracer.wait_for("disk full line", lambda: any("disk full" in x for x in tracer.err))
        answers = lab_mod.traffic("mesh", 5)  # after the recording stopped
        tracer.wait_clients([a.client for a in answers])
    finally:
        tracer.stop()
    full = [x for x in tracer.err if "disk full" in x]
    assert len(full) == 1 and "recording stopped" in full[0], tracer.err
    requests = tracer.requests()
    _traced(requests, answers)  # live requests still shown after the recording stopped
    info = subprocess.run([*SWARMTRACE, "info", str(path), "--json"], capture_output=True,
                          text=True, timeout=60)
    d = json.loads(info.stdout)
    print(f"soak: disk full: {rate:.0f} req/s, {len(requests)} requests shown, "
          f"{d['events']} events readable in {d['bytes']} bytes, exit {info.returncode}")
    assert info.returncode == EXIT_TRACE_DAMAGED and d["events"] > 0 and not d["complete"]


def test_sigkill_leaves_no_bpf_behind(lab: lab_mod.LabInfo) -> None:
    proc = start_trace(*FILTER)
    proc.kill()
    proc.wait()
    t0 = time.monotonic()
    assert _links_gone(), f"{our_links()} links left after SIGKILL"
    print(f"soak: SIGKILL: links gone {time.monotonic() - t0:.1f} s after the kill")
    again = start_trace("--json", "--count", "3", *FILTER, "--timeout", "60")
    answers = lab_mod.traffic("mesh", 3)
    out, err = stopped(again, sig=None)
    assert again.returncode == 0, err
    _traced([json.loads(x) for x in out.splitlines()], answers)


def test_two_tracers_at_once(lab: lab_mod.LabInfo) -> None:
    first = Running(start_trace("--json", *FILTER, "--timeout", "120"))
    second: Running | None = None
    try:
        second = Running(start_trace("--json", *FILTER, "--timeout", "120",
                                     links=2 * LAB_LINKS))
        both = lab_mod.traffic("mesh", 5) + lab_mod.traffic("vip", 5)
        for tracer in (first, second):
            tracer.wait_clients([a.client for a in both])
        first.stop()
        only_second = lab_mod.traffic("mesh", 3)  # the other one stopping breaks nothing
        second.wait_clients([a.client for a in only_second])
    finally:
        first.stop()
        if second is not None:
            second.stop()
    _traced(first.requests(), both)
    _traced(second.requests(), both + only_second)
    assert _links_gone()
    print(f"soak: two tracers: {len(first.requests())} and {len(second.requests())} requests")


def _doctor_leftovers() -> dict[str, str]:
    done = subprocess.run([*SWARMTRACE, "doctor", "--json"], capture_output=True, text=True,
                          timeout=120)
    caps = {c["key"]: c for c in json.loads(done.stdout)["capabilities"]}
    return caps["leftovers"]  # type: ignore[no-any-return]


def test_doctor_reports_what_a_killed_tracer_left() -> None:
    """A killed tracer leaves nothing (its links and programs die with it), and doctor says
    so; what another tool pinned of it outlives it, and doctor names that."""
    proc = start_trace("--port", "18232", links=0)
    held = leftovers.holders(set(leftovers.our_programs()))
    mine = sorted(i for i, pids in held.items() if proc.pid in pids)
    assert mine, "doctor does not see the running tracer's programs"
    pin = leftovers.BPF_FS / f"st_soak_{os.getpid()}"
    subprocess.run(["bpftool", "prog", "pin", "id", str(mine[0]), str(pin)], check=True)
    try:
        proc.kill()
        proc.wait()
        pinned = _doctor_leftovers()
    finally:
        pin.unlink(missing_ok=True)
    assert pinned["support"] == "no" and str(pin) in pinned["detail"], pinned
    assert f"id {mine[0]}" in pinned["detail"] and pinned["fix"], pinned
    deadline = time.monotonic() + 10  # the kernel frees programs after an RCU grace period
    while set(mine) & set(leftovers.our_programs()) and time.monotonic() < deadline:
        time.sleep(0.1)
    clean = _doctor_leftovers()
    print(f"soak: doctor after SIGKILL: with a pin: {pinned['detail']}; without: "
          f"{clean['detail']}")
    assert not set(mine) & set(leftovers.our_programs()), "the killed tracer's programs remain"
    assert clean["support"] == "yes" and clean["detail"].startswith("none"), clean
