#!/usr/bin/env python3
"""Trace file benchmark: bytes/event on disk, record rate, read rate, replay -> requests rate.

Targets (issue 7): <= 24 bytes/event, recording keeps up with 1 M events/s; (issue 16) replay
into requests within 4 times the time of reading, in every round. Reading and replay alternate
in each round and are timed both as wall time and as the process's CPU time: on a shared
machine the CPU ratio is the steadier one. Streams are the hand-made routing-mesh shape of
tracer.tracefile.synthetic (40 events per request). Run: .venv/bin/python scripts/bench_tracefile.py
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from tracer.gc_pacing import paced_gc
from tracer.pipeline import Pipeline
from tracer.source import Filter, SourceInfo
from tracer.tracefile import ReplaySource, TraceHeader, TraceWriter, open_trace
from tracer.tracefile.synthetic import EVENTS_PER_REQUEST, mesh_events

POLL_BATCH = 4096  # events per ring-buffer poll handed to the writer


def record(path: Path, events: np.ndarray) -> tuple[float, float]:
    """Seconds until `events` are on disk, and seconds the caller spent in events() calls,
    writing as a recorder does: one call per poll batch."""
    header = TraceHeader.now(SourceInfo("core", "bench", True), Filter(ports=(8080,)))
    t0 = time.perf_counter()
    in_calls = 0.0
    with TraceWriter(path, header) as w:
        for i in range(0, len(events), POLL_BATCH):
            t = time.perf_counter()
            w.events(events[i : i + POLL_BATCH])
            in_calls += time.perf_counter() - t
    return time.perf_counter() - t0, in_calls


def read(path: Path) -> tuple[float, float, int]:
    """Wall seconds, CPU seconds and events of reading the whole file."""
    t0, c0 = time.perf_counter(), time.process_time()
    with open_trace(path) as r:
        n = sum(len(chunk) for chunk in r.events())
    return time.perf_counter() - t0, time.process_time() - c0, n


def replay(path: Path, limit: int) -> tuple[float, float, int, int]:
    """Wall seconds, CPU seconds, events and requests for ReplaySource -> Pipeline (correlator)
    at full speed."""
    t0, c0 = time.perf_counter(), time.process_time()
    events = requests = 0
    # With `replay`'s GC policy: the pipeline sets none of its own.
    with ReplaySource(path, batch_events=POLL_BATCH) as src, paced_gc() as between_polls:
        pipe = Pipeline(src)
        while not src.finished and events < limit:
            between_polls()
            requests += len(pipe.poll(0))
            events = src.stats().events
        requests += len(pipe.flush())
    return time.perf_counter() - t0, time.process_time() - c0, events, requests


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--events", type=int, default=1_000_000, help="events per stream")
    ap.add_argument(
        "--replay-events", type=int, default=200_000,
        help="events run through the correlator (it is measured, then scaled to 1 M)",
    )  # fmt: skip
    ap.add_argument("--rounds", type=int, default=3, help="read/replay rounds (ratio per round)")
    ap.add_argument("--json", action="store_true", help="one JSON object on stdout")
    args = ap.parse_args()
    requests = max(args.events // EVENTS_PER_REQUEST, 1)
    out: dict[str, object] = {"events": requests * EVENTS_PER_REQUEST,
                              "load_average": os.getloadavg()[0]}
    with tempfile.TemporaryDirectory(prefix="swt-bench-") as d:
        for label, rate in (("sparse", 3_000.0), ("dense", 50_000.0)):
            events = mesh_events(requests, rate_per_s=rate)
            path = Path(d) / f"{label}.swt"
            secs, in_calls = record(path, events)
            out[f"{label}_bytes_per_event"] = round(path.stat().st_size / len(events), 2)
            out[f"{label}_record_mev_s"] = round(len(events) / secs / 1e6, 2)
            out[f"{label}_caller_ns_per_event"] = round(in_calls / len(events) * 1e9, 1)
            rsecs, _, n = read(path)
            assert n == len(events)
            out[f"{label}_read_mev_s"] = round(n / rsecs / 1e6, 2)
        rounds = []
        for _ in range(args.rounds):
            rsecs, rcpu, n = read(Path(d) / "sparse.swt")
            psecs, pcpu, pevents, preqs = replay(Path(d) / "sparse.swt", args.replay_events)
            per_m = (rsecs / n * 1e6, rcpu / n * 1e6, psecs / pevents * 1e6, pcpu / pevents * 1e6)
            rounds.append({"read_s_per_1m_events": round(per_m[0], 3),
                           "read_cpu_s_per_1m_events": round(per_m[1], 3),
                           "replay_s_per_1m_events": round(per_m[2], 3),
                           "replay_cpu_s_per_1m_events": round(per_m[3], 3),
                           "ratio": round(per_m[2] / per_m[0], 1),
                           "cpu_ratio": round(per_m[3] / per_m[1], 1)})
        out["replay_events"] = pevents
        out["replay_requests"] = preqs
        out["rounds"] = rounds
        out["worst_ratio"] = max(r["ratio"] for r in rounds)
        out["worst_cpu_ratio"] = max(r["cpu_ratio"] for r in rounds)
        out["load_average_end"] = os.getloadavg()[0]
    if args.json:
        print(json.dumps(out))
    else:
        for key, value in out.items():
            if key != "rounds":
                print(f"{key:28} {value}")
        for i, r in enumerate(rounds, 1):
            print(f"round {i}: read {r['read_s_per_1m_events']} s (cpu "
                  f"{r['read_cpu_s_per_1m_events']}) / replay {r['replay_s_per_1m_events']} s "
                  f"(cpu {r['replay_cpu_s_per_1m_events']}) per 1 M events: replay/read "
                  f"{r['ratio']} wall, {r['cpu_ratio']} cpu")
        print(
            "targets: <= 24 bytes/event, record >= 1 M events/s, "
            "replay within 4x of reading in every round",
            file=sys.stderr,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
