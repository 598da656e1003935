"""Tracing overhead: lab request throughput traced vs untraced, in the same run.

Also events per request, events/s, lost events, and BPF run time per program."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import threading
import time
from dataclasses import dataclass

from tracer import lab
from tracer.pipeline import Pipeline
from tracer.probes import libbpf
from tracer.probes.core import CoreSource
from tracer.source import Filter

FILTER = Filter(ports=(8080,), addrs=("10.0.0.9",))


@dataclass
class Traced:
    rate: float
    events: int
    requests: int
    lost: int
    seconds: float
    prog_ns: dict[str, float]


def _prog_stats() -> dict[str, tuple[int, int]]:
    out = subprocess.run(["bpftool", "prog", "show", "--json"], capture_output=True, text=True,
                         check=True).stdout
    return {p["name"]: (p.get("run_time_ns", 0), p.get("run_cnt", 0))
            for p in json.loads(out) if p.get("name", "").startswith("st_")}


def traced_run(mode: str, seconds: float, conns: int) -> Traced:
    stats_fd = libbpf.enable_stats()
    try:
        with CoreSource(FILTER) as src:
            pipe = Pipeline(src)
            stop = threading.Event()
            done = [0]

            def consume() -> None:
                while not stop.is_set():
                    done[0] += len(pipe.poll(0.1))

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
            done[0] += len(pipe.flush())
            st = src.stats()
    finally:
        os.close(stats_fd)
    prog_ns = {}
    for name, (ns, cnt) in after.items():
        b_ns, b_cnt = before.get(name, (0, 0))
        if cnt - b_cnt:
            prog_ns[name] = (ns - b_ns) / (cnt - b_cnt)
    return Traced(rate, pipe.events, done[0], st.lost, elapsed, prog_ns)


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
        lab.flood(args.mode, 1.0, args.conns)  # type: ignore[arg-type]  # warm up
        base, traced = [], []
        for _ in range(args.rounds):
            base.append(lab.flood(args.mode, args.seconds, args.conns))  # type: ignore[arg-type]
            traced.append(traced_run(args.mode, args.seconds, args.conns))
        untraced_rate = sum(base) / len(base)
        traced_rate = sum(t.rate for t in traced) / len(traced)
        t = traced[-1]
        print(f"mode {args.mode}, {args.conns} concurrent connections, {args.seconds:.0f} s x "
              f"{args.rounds} rounds, filter port 8080 + VIP 10.0.0.9")
        print(f"untraced  {untraced_rate:9.0f} req/s")
        print(f"traced    {traced_rate:9.0f} req/s")
        print(f"ratio     {traced_rate / untraced_rate:9.3f}  (traced / untraced)")
        reqs = max(t.requests, 1)
        print(f"events    {t.events} = {t.events / reqs:.1f} per request, "
              f"{t.events / t.seconds:.0f} events/s, lost {t.lost}")
        print(f"requests  {t.requests} correlated")
        for name, ns in sorted(t.prog_ns.items()):
            print(f"bpf       {name:<12} {ns:7.0f} ns per run")
    finally:
        if not was_up:
            lab.down()


if __name__ == "__main__":
    main()
