"""The always-on ring recorder under a saturating flood with failures that come and go.

Reports, from one run with interleaved untraced rounds: the throughput ratio, the consumer's CPU
per request, the ring directory's peak size against its bound, and what was kept: every kept
file must replay and hold failed requests, and the healthy stretches must be gone."""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from tracer import lab
from tracer.commands import trace
from tracer.lab.refuse import refusing
from tracer.lab.topology import BACKENDS
from tracer.live import open_pipeline
from tracer.model import Request, Status
from tracer.source import Filter
from tracer.tracefile.requests import trace_requests
from tracer.tracefile.ring import KEPT_PREFIX, RingConfig, parse_size, ring_recording

FILTER = Filter(ports=(8080,), addrs=("10.0.0.9",))


@dataclass
class RingRun:
    rate: float
    requests: int
    failed_seen: int
    consumer_cpu_s: float
    peak_bytes: int
    recorded_bytes: int  # written into the ring in all (segments, before rotation)
    kept_files: int
    kept_bytes: int
    kept_failed: int
    kept_ok: int


def _dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.glob("*") if p.is_file())


def ring_run(mode: str, seconds: float, conns: int, size: int, every_s: float,
             burst_s: float) -> RingRun:
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        config = RingConfig(tmp, size, before_s=1.0, after_s=1.0)
        stop = threading.Event()
        seen: list[Request] = []
        cpu = [0.0]
        peak = [0]
        recorded = [0]
        with open_pipeline("core", FILTER) as pipe, ring_recording(pipe, config, FILTER) as ring:

            def observe(reqs: list[Request]) -> None:
                ring.observe(reqs)
                seen.extend(reqs)

            def consume() -> None:  # the loop of `trace -w DIR --ring -q` itself
                trace.show(pipe, None, 0, None, observe, stop=stop)
                cpu[0] = time.thread_time()

            def faults() -> None:
                # Short bursts of refusals between long healthy stretches.
                while not stop.wait(every_s):
                    with refusing(BACKENDS[1]):
                        stop.wait(burst_s)
                    peak[0] = max(peak[0], _dir_bytes(tmp))

            threads = [threading.Thread(target=consume), threading.Thread(target=faults)]
            for t in threads:
                t.start()
            try:
                rate = lab.flood(mode, seconds, conns)  # type: ignore[arg-type]
            finally:
                time.sleep(config.after_s + 0.5)  # let the last window's after-part arrive
                stop.set()
                for t in threads:
                    t.join()
            reqs = pipe.flush()
            ring.observe(reqs)
            seen.extend(reqs)
            peak[0] = max(peak[0], _dir_bytes(tmp))
            recorded[0] = ring.recorded_bytes
        kept = sorted(tmp.glob(f"{KEPT_PREFIX}*.swt"))
        # Windows around bursts close together overlap: a request kept in two files is one.
        kept_reqs = list({(r.client, r.start_ns): r
                          for path in kept for r in trace_requests(path)}.values())
        return RingRun(
            rate, len(seen), sum(r.status is not Status.OK for r in seen), cpu[0], peak[0],
            recorded[0], len(kept), _dir_bytes(tmp),
            sum(r.status is not Status.OK for r in kept_reqs),
            sum(r.status is Status.OK for r in kept_reqs))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--mode", default="mesh", choices=("mesh", "vip"))
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--conns", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--size", default="16M", help="the ring's bound (default 16M)")
    ap.add_argument("--every", type=float, default=6.0, help="seconds between failure bursts")
    ap.add_argument("--burst", type=float, default=0.2, help="seconds each burst lasts")
    args = ap.parse_args()
    size = parse_size(args.size)
    was_up = lab.status() is not None
    lab.up()
    try:
        lab.flood(args.mode, 1.0, args.conns)  # warm up
        base: list[float] = []
        runs: list[RingRun] = []
        for _ in range(args.rounds):  # interleaved, so drifting background load hits both
            base.append(lab.flood(args.mode, args.seconds, args.conns))
            runs.append(ring_run(args.mode, args.seconds, args.conns, size, args.every,
                                 args.burst))
        untraced = sum(base) / len(base)
        print(f"mode {args.mode}, {args.conns} concurrent connections, {args.seconds:.0f} s x "
              f"{args.rounds} rounds; backend-2 refuses for {args.burst} s every {args.every} s; "
              f"ring {args.size}, 1 s kept each side")
        print(f"untraced            {untraced:7.0f} req/s")
        for i, r in enumerate(runs, 1):
            print(f"ring round {i}        {r.rate:7.0f} req/s   ratio {r.rate / untraced:.3f}   "
                  f"consumer {1e6 * r.consumer_cpu_s / max(r.requests, 1):.0f} us/request")
            print(f"  disk   peak {r.peak_bytes / 2**20:.1f} MiB of {size / 2**20:.0f} MiB bound; "
                  f"{r.recorded_bytes / 2**20:.1f} MiB recorded, "
                  f"{r.kept_bytes / 2**20:.2f} MiB kept in {r.kept_files} files")
            print(f"  kept   {r.kept_failed} of {r.failed_seen} failed requests, "
                  f"{r.kept_ok} ok requests around them (of {r.requests} in all)")
            if r.peak_bytes > size:
                raise SystemExit(f"the ring outgrew its bound: {r.peak_bytes} > {size} bytes")
    finally:
        if not was_up:
            lab.down()


if __name__ == "__main__":
    main()
