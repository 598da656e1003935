"""The pipeline compiled by mypyc against pure Python, in the same run, on a recorded flood.

The hot modules (HOT) are compiled by mypyc into a copy of the package in a temporary
directory (never into tracer/ itself); a second copy stays pure. Interleaved rounds replay
the same trace file in a child process of each: the full pipeline (correlation, names, text
to /dev/null) as CPU per request, and replay into requests alone (no names, no text) as CPU
seconds per 1 M events. Without --trace, a flood of the netns lab is recorded first (root).
Needs mypy (the test extra), a C compiler and python3-dev (scripts/setup installs them)."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import ExitStack
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# What a live trace runs per event and per request (profiled on a recorded flood).
HOT = ("events", "event_roles", "correlate", "in_flight", "flow_index", "path_hops", "drops",
       "request_end", "past_connections", "dns_join", "dns_lookups", "model", "pipeline",
       "enrich/annotate", "enrich/history", "enrich/names", "sinks/text", "sinks/hop_order")
BATCH = 2400  # events per poll, about what a live poll of the flood returns


def record_flood(path: Path, seconds: float) -> None:
    """`trace -w FILE -q` of the lab's routing mesh under the flood (4 connections)."""
    from tracer import lab
    from tracer.bench.overhead import FILTER
    from tracer.enrich import open_names
    from tracer.live import lab_lb_note
    from tracer.pipeline import Pipeline
    from tracer.probes.core import CoreSource
    from tracer.tracefile.record import recording

    was_up = lab.status() is not None
    lab.up()
    try:
        with ExitStack() as stack:
            src = stack.enter_context(CoreSource(FILTER))
            pipe = Pipeline(src, stack.enter_context(open_names()), lab_lb_note())
            stack.enter_context(recording(pipe, path, FILTER))
            stop = threading.Event()

            def consume() -> None:
                while not stop.is_set():
                    pipe.pump(0.1)

            t = threading.Thread(target=consume)
            t.start()
            try:
                lab.flood("mesh", seconds, 4)
            finally:
                stop.set()
                t.join()
            for _ in pipe.pump_rest():
                pass
    finally:
        if not was_up:
            lab.down()


def build(dest: Path, compiled: bool) -> None:
    """A copy of the package in dest/tracer; compiled: HOT built there by mypyc."""
    shutil.copytree(ROOT / "tracer", dest / "tracer",
                    ignore=shutil.ignore_patterns("__pycache__", "*.so"))
    # The strict mypy settings the code passes (pyproject.toml's [tool.mypy]; not the file:
    # the setuptools that mypyc builds with would read its [project] too).
    (dest / "mypy.ini").write_text("[mypy]\nstrict = True\nignore_missing_imports = True\n")
    if not compiled:
        return
    res = subprocess.run([sys.executable, "-m", "mypyc", *(f"tracer/{m}.py" for m in HOT)],
                         cwd=dest, capture_output=True, text=True, check=False)
    if res.returncode != 0:
        tail = (res.stdout + res.stderr).strip().splitlines()[-5:]
        sys.exit("mypyc failed (a C compiler and python3-dev are needed: scripts/setup):\n"
                 + "\n".join(tail))


def child(path: Path) -> None:
    """One round in this interpreter: print the timings as JSON."""
    from tracer import pipeline
    from tracer.gc_pacing import paced_gc
    from tracer.sinks.text import TextSink
    from tracer.tracefile.replay import ReplaySource
    from tracer.tracefile.topology import trace_names

    def run(full: bool) -> tuple[float, int, int]:
        c0 = time.process_time()
        requests = 0
        # With `replay`'s GC policy: the pipeline sets none of its own.
        with ReplaySource(path, batch_events=BATCH) as src, open(os.devnull, "w") as out, \
                paced_gc() as between_polls:
            pipe = pipeline.Pipeline(src, trace_names(path) if full else None,
                                     src.header.lb_note)
            sink = TextSink(out)
            while not src.finished:
                between_polls()
                done = pipe.poll(0)
                requests += len(done)
                if full:
                    sink.write_all(done)
            done = pipe.flush()
            requests += len(done)
            if full:
                sink.write_all(done)
            events = src.stats().events
        return time.process_time() - c0, events, requests

    run(True)  # warm: imports, first reads of the file
    full_cpu, events, requests = run(True)
    replay_cpu, _, _ = run(False)
    print(json.dumps({"compiled": not pipeline.__file__.endswith(".py"),
                      "us_per_request": full_cpu / requests * 1e6,
                      "replay_cpu_s_per_1m_events": replay_cpu / events * 1e6,
                      "events": events, "requests": requests}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--trace", type=Path, help="a recorded flood (default: record one, root)")
    ap.add_argument("--seconds", type=float, default=4.0, help="flood length when recording")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child)
        return
    with tempfile.TemporaryDirectory(prefix="swt-compiled-") as tmp:
        d = Path(tmp)
        trace = args.trace
        if trace is None:
            trace = d / "flood.swt"
            record_flood(trace, args.seconds)
        t0 = time.monotonic()
        build(d / "pure", compiled=False)
        build(d / "mypyc", compiled=True)
        print(f"mypyc built {len(HOT)} modules in {time.monotonic() - t0:.0f} s; "
              f"load average {os.getloadavg()[0]:.2f} at start", flush=True)
        runs: dict[str, list[dict[str, float]]] = {"pure": [], "mypyc": []}
        for i in range(args.rounds):
            for kind in runs:  # interleaved: a change of the machine's load hits both
                env = {**os.environ, "PYTHONPATH": str(d / kind)}
                out = subprocess.run([sys.executable, "-m", "tracer.bench.compiled", "--child",
                                      str(trace.resolve())], env=env, cwd=d, check=True,
                                     capture_output=True, text=True).stdout
                r = json.loads(out)
                assert r["compiled"] == (kind == "mypyc"), f"{kind} child imported the other"
                runs[kind].append(r)
            p, c = runs["pure"][-1], runs["mypyc"][-1]
            print(f"round {i + 1}: full pipeline {p['us_per_request']:.1f} -> "
                  f"{c['us_per_request']:.1f} us/request "
                  f"({p['us_per_request'] / c['us_per_request']:.2f}x); replay "
                  f"{p['replay_cpu_s_per_1m_events']:.2f} -> "
                  f"{c['replay_cpu_s_per_1m_events']:.2f} CPU s per 1 M events "
                  f"({p['replay_cpu_s_per_1m_events'] / c['replay_cpu_s_per_1m_events']:.2f}x)",
                  flush=True)
        first = runs["pure"][0]
        print(f"trace: {first['events']:.0f} events, {first['requests']:.0f} requests; "
              f"load average {os.getloadavg()[0]:.2f} at the end")


if __name__ == "__main__":
    main()
