"""Where loss starts: every packet traced (--all-packets) under the lab's flood, for ring
buffer sizes from small to the default, recording (-w -q) and the full live view.

The flood offers what it offers (a few hundred thousand events/s on 2 CPUs); a smaller ring
finds the rate a consumer keeps up with before the ring overflows. Lost counts are per CPU."""

from __future__ import annotations

import argparse
import os

from tracer import lab
from tracer.bench.overhead import FILTER, traced_run
from tracer.source import Filter

RINGS = (256 << 10, 1 << 20, 4 << 20, 16 << 20)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--mode", default="mesh", choices=("mesh", "vip"))
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--conns", type=int, default=8)
    args = ap.parse_args()
    flt = Filter(ports=FILTER.ports, addrs=FILTER.addrs, all_packets=True)
    ncpu = os.cpu_count() or 1
    was_up = lab.status() is not None
    lab.up()
    try:
        print(f"every packet (--all-packets), mode {args.mode}, {args.conns} connections, "
              f"{args.seconds:.0f} s per row, load average {os.getloadavg()[0]:.2f}")
        print(f"{'ring':>8} {'consumer':<12} {'offered ev/s':>12} {'read ev/s':>10} "
              f"{'lost':>8}  lost per CPU")
        for ring in RINGS:
            for full in (False, True):
                t = traced_run(args.mode, args.seconds, args.conns, full=full, flt=flt,
                               ring_bytes=ring)
                c = t.counters
                offered = sum(c.get(f"emitted_cpu{i}", 0) + c.get(f"lost_cpu{i}", 0)
                              for i in range(ncpu))
                per_cpu = " ".join(str(c.get(f"lost_cpu{i}", 0)) for i in range(ncpu))
                label = "trace" if full else "-w -q"
                print(f"{ring >> 10:>6} KiB {label:<12} {offered / t.seconds:>12.0f} "
                      f"{t.events / t.seconds:>10.0f} {t.lost:>8}  {per_cpu}", flush=True)
    finally:
        if not was_up:
            lab.down()


if __name__ == "__main__":
    main()
