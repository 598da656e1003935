#!/usr/bin/env python3
"""Trace file benchmark: bytes/event on disk, record rate, read rate, replay -> requests rate.

Targets (issue 7): <= 24 bytes/event, recording keeps up with 1 M events/s, replay of 1 M
events into requests in < 2 s. Streams are the hand-made routing-mesh shape of
tracer.tracefile.synthetic (40 events per request). Run: .venv/bin/python scripts/bench_tracefile.py
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

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


def read(path: Path) -> tuple[float, int]:
    t0 = time.perf_counter()
    with open_trace(path) as r:
        n = sum(len(chunk) for chunk in r.events())
    return time.perf_counter() - t0, n


def replay(path: Path, limit: int) -> tuple[float, int, int]:
    """Seconds, events and requests for ReplaySource -> Pipeline (correlator) at full speed."""
    t0 = time.perf_counter()
    events = requests = 0
    with ReplaySource(path, batch_events=POLL_BATCH) as src:
        pipe = Pipeline(src)
        while not src.finished and events < limit:
            requests += len(pipe.poll(0))
            events = src.stats().events
        requests += len(pipe.flush())
    return time.perf_counter() - t0, events, requests


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--events", type=int, default=1_000_000, help="events per stream")
    ap.add_argument(
        "--replay-events", type=int, default=200_000,
        help="events run through the correlator (it is measured, then scaled to 1 M)",
    )  # fmt: skip
    ap.add_argument("--json", action="store_true", help="one JSON object on stdout")
    args = ap.parse_args()
    requests = max(args.events // EVENTS_PER_REQUEST, 1)
    out: dict[str, object] = {"events": requests * EVENTS_PER_REQUEST}
    with tempfile.TemporaryDirectory(prefix="swt-bench-") as d:
        for label, rate in (("sparse", 3_000.0), ("dense", 50_000.0)):
            events = mesh_events(requests, rate_per_s=rate)
            path = Path(d) / f"{label}.swt"
            secs, in_calls = record(path, events)
            out[f"{label}_bytes_per_event"] = round(path.stat().st_size / len(events), 2)
            out[f"{label}_record_mev_s"] = round(len(events) / secs / 1e6, 2)
            out[f"{label}_caller_ns_per_event"] = round(in_calls / len(events) * 1e9, 1)
            rsecs, n = read(path)
            assert n == len(events)
            out[f"{label}_read_mev_s"] = round(n / rsecs / 1e6, 2)
        psecs, pevents, preqs = replay(Path(d) / "sparse.swt", args.replay_events)
        out["replay_events"] = pevents
        out["replay_requests"] = preqs
        out["replay_s"] = round(psecs, 3)
        out["replay_s_per_1m_events"] = round(psecs / pevents * 1e6, 2)
        out["read_s_per_1m_events"] = round(1 / out["sparse_read_mev_s"], 3)  # type: ignore[operator]
    if args.json:
        print(json.dumps(out))
    else:
        for key, value in out.items():
            print(f"{key:28} {value}")
        print(
            "targets: <= 24 bytes/event, record >= 1 M events/s, "
            "replay 1 M events -> requests < 2 s",
            file=sys.stderr,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
