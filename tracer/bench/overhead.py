"""Tracing overhead: lab request throughput traced vs untraced, in the same run.

Interleaved rounds of: untraced, the manual peer (tcpdump -w in every netns of the path),
`trace -w -q` and the full `trace`. Also CPU per request, events per request, lost events,
and BPF run time per program."""

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
from tracer.bench.peer import tcpdump_everywhere
from tracer.enrich import open_names
from tracer.live import lab_lb_note
from tracer.pipeline import Pipeline, paced_gc
from tracer.probes import libbpf
from tracer.probes.core import RING_BYTES, CoreSource
from tracer.sinks.text import TextSink
from tracer.source import Filter
from tracer.tracefile.record import recording

FILTER = Filter(ports=(8080,), addrs=("10.0.0.9",))


@dataclass
class Traced:
    rate: float
    events: int
    requests: int  # requests the flood completed
    lost: int
    seconds: float
    prog_ns: dict[str, tuple[float, int]]  # program -> (ns per run, runs)
    consumer_cpu_s: float  # CPU time of the thread that reads, decodes and correlates
    process_cpu_s: float  # CPU time of every thread of the tracer (names, recorder ...)
    counters: dict[str, int]  # the source's extra stats: emitted and lost per CPU


def _prog_stats() -> dict[str, tuple[int, int]]:
    out = subprocess.run(["bpftool", "prog", "show", "--json"], capture_output=True, text=True,
                         check=True).stdout
    return {p["name"]: (p.get("run_time_ns", 0), p.get("run_cnt", 0))
            for p in json.loads(out) if p.get("name", "").startswith("st_")}


def traced_run(mode: str, seconds: float, conns: int, full: bool, stats: bool = False,
               flt: Filter = FILTER, ring_bytes: int = RING_BYTES, rate: float = 0.0) -> Traced:
    """Flood the lab while tracing. full: the `swarmtrace trace` pipeline (correlation,
    names, text to /dev/null); else `trace -w FILE -q`: probes recorded to a trace file.
    stats: measure BPF run time per program (it slows every program run: not for ratios)."""
    stats_fd = libbpf.enable_stats() if stats else -1
    try:
        with ExitStack() as stack:
            source = stack.enter_context(CoreSource(flt, ring_bytes=ring_bytes))
            names = stack.enter_context(open_names())
            pipe = Pipeline(source, names, lab_lb_note())
            if full:
                sink = TextSink(stack.enter_context(open(os.devnull, "w")))
            else:
                tmp = Path(stack.enter_context(tempfile.TemporaryDirectory()))
                stack.enter_context(recording(pipe, tmp / "bench.swt", FILTER))
            stop = threading.Event()
            events = [0]
            cpu = [0.0]

            def consume() -> None:  # as `trace` (show) and `trace -w -q` (_record_only) do
                if full:
                    with paced_gc() as between_polls:
                        while not stop.is_set():
                            between_polls()
                            sink.write_all(pipe.poll(0.1))
                else:
                    while not stop.is_set():
                        events[0] += len(pipe.pump(0.1))
                cpu[0] = time.thread_time()

            t = threading.Thread(target=consume)
            cpu0 = time.process_time()
            t.start()
            before = _prog_stats()
            t0 = time.monotonic()
            done = lab.flood(mode, seconds, conns, rate)  # type: ignore[arg-type]
            elapsed = time.monotonic() - t0
            after = _prog_stats()
            time.sleep(0.5)
            stop.set()
            t.join()
            if full:
                sink.write_all(pipe.flush())
                events[0] = pipe.events
            process_cpu = time.process_time() - cpu0
            st = source.stats()
    finally:
        if stats_fd >= 0:
            os.close(stats_fd)
    prog_ns = {}
    for name, (ns, cnt) in after.items():
        b_ns, b_cnt = before.get(name, (0, 0))
        if cnt - b_cnt:
            prog_ns[name] = ((ns - b_ns) / (cnt - b_cnt), cnt - b_cnt)
    return Traced(done, events[0], round(done * seconds), st.lost, elapsed, prog_ns, cpu[0],
                  process_cpu, st.extra)


def peer_run(mode: str, seconds: float, conns: int) -> tuple[float, float]:
    """Flood while tcpdump writes every netns of the path: req/s, tcpdump CPU s per request."""
    with tempfile.TemporaryDirectory(prefix="swt-peer-") as d, \
            tcpdump_everywhere(mode, Path(d)) as peer:
        cpu0 = peer.cpu_s()
        t0 = time.monotonic()
        rate = lab.flood(mode, seconds, conns)  # type: ignore[arg-type]
        requests = max(rate * (time.monotonic() - t0), 1.0)
        return rate, (peer.cpu_s() - cpu0) / requests


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
        print(f"mode {args.mode}, {args.conns} concurrent connections, new connection per "
              f"request, {args.seconds:.0f} s x {args.rounds} rounds, filter port 8080 + VIP, "
              f"load average {os.getloadavg()[0]:.2f} at start")
        base: list[float] = []
        peer: list[tuple[float, float]] = []
        probes: list[Traced] = []
        full: list[Traced] = []
        for i in range(args.rounds):  # interleaved, so drifting background load hits all
            base.append(lab.flood(args.mode, args.seconds, args.conns))
            peer.append(peer_run(args.mode, args.seconds, args.conns))
            probes.append(traced_run(args.mode, args.seconds, args.conns, full=False))
            full.append(traced_run(args.mode, args.seconds, args.conns, full=True))
            print(f"round {i + 1}: untraced {base[-1]:.0f} req/s; ratios: tcpdump -w (peer) "
                  f"{peer[-1][0] / base[-1]:.3f}, trace -w -q {probes[-1].rate / base[-1]:.3f}, "
                  f"trace (full) {full[-1].rate / base[-1]:.3f}", flush=True)
        untraced = sum(base) / len(base)
        print(f"untraced              {untraced:7.0f} req/s")
        rates = (("tcpdump -w (peer)", [r for r, _ in peer]),
                 ("trace -w -q", [t.rate for t in probes]),
                 ("trace (full)", [t.rate for t in full]))
        for label, runs in rates:
            rate = sum(runs) / len(runs)
            worst = min(r / b for r, b in zip(runs, base, strict=True))
            print(f"{label:<21} {rate:7.0f} req/s   ratio {rate / untraced:.3f} "
                  f"(worst round {worst:.3f})")
        cpu = [("tcpdump -w (peer)", sum(c for _, c in peer) / len(peer))]
        cpu += [(label, sum(t.process_cpu_s / max(t.requests, 1) for t in runs) / len(runs))
                for label, runs in (("trace -w -q", probes), ("trace (full)", full))]
        print("user-space CPU per request (whole process): " +
              ", ".join(f"{label} {1e6 * c:.0f} us" for label, c in cpu))
        t = traced_run(args.mode, args.seconds, args.conns, full=True, stats=True)
        reqs = max(t.requests, 1)
        lost = sum(r.lost for r in probes + full) + t.lost
        print(f"events    {t.events} = {t.events / reqs:.1f} per request, "
              f"{t.events / t.seconds:.0f} events/s, lost {lost} in all traced runs")
        print(f"consumer  {1e6 * t.consumer_cpu_s / reqs:.0f} us CPU per request (full trace), "
              f"{1e6 * probes[-1].consumer_cpu_s / max(probes[-1].requests, 1):.0f} us "
              f"(record only)")
        # Measured in an extra run with kernel.bpf_stats on (it adds two clock reads per run).
        for name, (ns, count) in sorted(t.prog_ns.items()):
            print(f"bpf       {name:<12} {ns:5.0f} ns per run, {count / reqs:5.1f} runs/request")
        print(f"load average {os.getloadavg()[0]:.2f} at the end")
    finally:
        if not was_up:
            lab.down()


if __name__ == "__main__":
    main()
