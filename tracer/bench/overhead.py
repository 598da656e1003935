"""Tracing overhead: lab request throughput traced vs untraced, in the same run.

Also events per request, events/s, lost events, and BPF run time per program."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile
import threading
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

from tracer import lab
from tracer.live import open_pipeline
from tracer.probes import libbpf
from tracer.sinks.text import TextSink
from tracer.source import Filter
from tracer.tracefile.record import recording

FILTER = Filter(ports=(8080,), addrs=("10.0.0.9",))


@dataclass
class Traced:
    rate: float
    events: int
    requests: int
    lost: int
    seconds: float
    prog_ns: dict[str, tuple[float, int]]  # program -> (ns per run, runs)
    consumer_cpu_s: float  # CPU time of the thread that reads, decodes and correlates


def _prog_stats() -> dict[str, tuple[int, int]]:
    out = subprocess.run(["bpftool", "prog", "show", "--json"], capture_output=True, text=True,
                         check=True).stdout
    return {p["name"]: (p.get("run_time_ns", 0), p.get("run_cnt", 0))
            for p in json.loads(out) if p.get("name", "").startswith("st_")}


def traced_run(mode: str, seconds: float, conns: int, full: bool, stats: bool = False) -> Traced:
    """Flood the lab while tracing. full: the `swarmtrace trace` pipeline (correlation,
    names, text to /dev/null); else `trace -w FILE -q`: probes recorded to a trace file.
    stats: measure BPF run time per program (it slows every program run: not for ratios)."""
    stats_fd = libbpf.enable_stats() if stats else -1
    try:
        with ExitStack() as stack:
            pipe = stack.enter_context(open_pipeline("core", FILTER))
            source = pipe.source
            if full:
                sink = TextSink(stack.enter_context(open(os.devnull, "w")))
            else:
                tmp = Path(stack.enter_context(tempfile.TemporaryDirectory()))
                stack.enter_context(recording(pipe, tmp / "bench.swt", FILTER))
            stop = threading.Event()
            done = [0, 0]  # requests, events
            cpu = [0.0]

            def consume() -> None:
                while not stop.is_set():
                    if full:
                        reqs = pipe.poll(0.1)
                        sink.write_all(reqs)
                        done[0] += len(reqs)
                    else:
                        done[1] += len(pipe.pump(0.1))
                cpu[0] = time.thread_time()

            t = threading.Thread(target=consume)
            t.start()
            before = _prog_stats()
            t0 = time.monotonic()
            rate = lab.flood(mode, seconds, conns)  # type: ignore[arg-type]
            elapsed = time.monotonic() - t0
            after = _prog_stats()
            time.sleep(0.5)
            stop.set()
            t.join()
            if full:
                done[0] += len(pipe.flush())
                done[1] = pipe.events
            st = source.stats()
    finally:
        if stats_fd >= 0:
            os.close(stats_fd)
    prog_ns = {}
    for name, (ns, cnt) in after.items():
        b_ns, b_cnt = before.get(name, (0, 0))
        if cnt - b_cnt:
            prog_ns[name] = ((ns - b_ns) / (cnt - b_cnt), cnt - b_cnt)
    return Traced(rate, done[1], done[0], st.lost, elapsed, prog_ns, cpu[0])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--mode", default="mesh", choices=("mesh", "vip"))
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--conns", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    was_up = lab.status() is not None
    lab.up()
    try:
        lab.flood(args.mode, 1.0, args.conns)  # warm up
        base: list[float] = []
        probes: list[Traced] = []
        full: list[Traced] = []
        for _ in range(args.rounds):  # interleaved, so drifting background load hits all three
            base.append(lab.flood(args.mode, args.seconds, args.conns))
            probes.append(traced_run(args.mode, args.seconds, args.conns, full=False))
            full.append(traced_run(args.mode, args.seconds, args.conns, full=True))
        untraced = sum(base) / len(base)
        print(f"mode {args.mode}, {args.conns} concurrent connections, new connection per "
              f"request, {args.seconds:.0f} s x {args.rounds} rounds, filter port 8080 + VIP")
        print(f"untraced            {untraced:7.0f} req/s")
        for label, runs in (("trace -w -q", probes), ("trace (full)", full)):
            rate = sum(r.rate for r in runs) / len(runs)
            print(f"{label:<19} {rate:7.0f} req/s   ratio {rate / untraced:.3f}")
        t = traced_run(args.mode, args.seconds, args.conns, full=True, stats=True)
        reqs = max(t.requests, 1)
        print(f"events    {t.events} = {t.events / reqs:.1f} per request, "
              f"{t.events / t.seconds:.0f} events/s, lost {t.lost + probes[-1].lost}")
        print(f"consumer  {1e6 * t.consumer_cpu_s / reqs:.0f} us CPU per request (full trace), "
              f"{1e6 * probes[-1].consumer_cpu_s / reqs:.0f} us (record only)")
        # Measured in an extra run with kernel.bpf_stats on (it adds two clock reads per run).
        for name, (ns, count) in sorted(t.prog_ns.items()):
            print(f"bpf       {name:<12} {ns:5.0f} ns per run, {count / reqs:5.1f} runs/request")
    finally:
        if not was_up:
            lab.down()


if __name__ == "__main__":
    main()
