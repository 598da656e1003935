"""`replay` streams: its peak memory does not grow with the trace file's size (issue 16 item 4).

Two generated traces, 50 MB and 200 MB, of routing-mesh requests between data segments of
other flows (random, so they do not compress away); the larger one has four times the bytes
and four times the requests. `replay --json` runs on each as a user runs it, and its peak RSS
(VmHWM) is measured.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from measured_run import PYTHON, Run, run_measured

from tracer.events import EVENT_DTYPE, TCP_ACK, Point
from tracer.source import Filter, SourceInfo
from tracer.tracefile import TraceHeader, TraceWriter
from tracer.tracefile.synthetic import mesh_events

REQUESTS_PER_PART = 1000
SEGMENTS_PER_PART = 80_000
PART_NS = 10_000_000_000  # parts 10 s apart: every request of a part is over before the next
# What the larger file may add to the peak: far less than its extra 150 MB or ~22k requests.
GROWTH_MIB = 20
PEAK_MIB = 300


def _segments(rng: np.random.Generator, n: int, t0: int, t1: int) -> np.ndarray:
    """Data segments (ACK only) of random flows: incompressible, and dropped by correlation."""
    seg = np.frombuffer(rng.bytes(n * EVENT_DTYPE.itemsize), dtype=EVENT_DTYPE).copy()
    seg["proto"], seg["tcp_flags"], seg["point"], seg["flags"] = 6, TCP_ACK, Point.NF_PRE, 0
    seg["ts_ns"] = np.sort(rng.integers(t0, t1, n)).astype(np.uint64)
    return seg


def _write_trace(path: Path, megabytes: int) -> int:
    """A trace of at least `megabytes` MB on disk; how many requests it holds."""
    rng = np.random.default_rng(16)
    header = TraceHeader.now(SourceInfo("core", "generated", True), Filter(ports=(8080,)))
    parts = 0
    with TraceWriter(path, header) as w:
        while w.bytes_written < megabytes * 1_000_000:
            mesh = mesh_events(REQUESTS_PER_PART, seed=parts)
            mesh["ts_ns"] += np.uint64(parts * PART_NS)
            seg = _segments(rng, SEGMENTS_PER_PART, int(mesh["ts_ns"][0]), int(mesh["ts_ns"][-1]))
            part = np.concatenate([mesh, seg])
            w.events(part[np.argsort(part["ts_ns"], kind="stable")])
            w.flush()
            parts += 1
    return parts * REQUESTS_PER_PART


def _replay(path: Path, out: Path) -> tuple[Run, int]:
    """The run, and how many requests it wrote."""
    with out.open("w") as sink:
        run = run_measured([str(PYTHON), "-m", "tracer", "replay", "--json", str(path)],
                           timeout=300, stdout=sink)
    with out.open() as lines:
        return run, sum(1 for _ in lines)


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[int, tuple[int, int, Run]]:
    """megabytes -> (requests generated, requests written, the run)."""
    out = {}
    for megabytes in (50, 200):
        d = tmp_path_factory.mktemp("memory")
        requests = _write_trace(d / "trace.swt", megabytes)
        run, written = _replay(d / "trace.swt", d / "requests.json")
        out[megabytes] = (requests, written, run)
        (d / "trace.swt").unlink()
        (d / "requests.json").unlink()
    return out


def test_replay_peak_memory_does_not_grow_with_the_file(
    runs: dict[int, tuple[int, int, Run]],
) -> None:
    (small_reqs, _, small), (big_reqs, _, big) = runs[50], runs[200]
    assert small.returncode == 0 and big.returncode == 0, small.stderr + big.stderr
    assert big_reqs >= 3.5 * small_reqs
    small_mib, big_mib = small.max_rss_kib / 1024, big.max_rss_kib / 1024
    figures = (f"peak RSS {small_mib:.0f} MiB for 50 MB ({small_reqs} requests), "
               f"{big_mib:.0f} MiB for 200 MB ({big_reqs} requests)")
    print(f"replay memory: {figures}; {small.seconds:.1f} s and {big.seconds:.1f} s")
    assert big_mib - small_mib < GROWTH_MIB, figures
    assert big_mib < PEAK_MIB, figures


def test_streaming_replay_writes_every_request(runs: dict[int, tuple[int, int, Run]]) -> None:
    for generated, written, _ in runs.values():
        assert written == generated
