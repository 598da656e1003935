"""Scale curve: the full live `trace` against offered load and against watched services.

For each offered load (paced requests/s, new connection each, then the unpaced flood) an
untraced and a traced run, back to back: the throughput ratio and the tracer's CPU per
request. Then the flood with more watched services (more ports in the kernel filter).
Writes a table (markdown) and a picture (matplotlib, if installed)."""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from pathlib import Path

from tracer import lab
from tracer.bench.overhead import FILTER, traced_run
from tracer.source import Filter

RATES = (100.0, 1000.0, 4000.0, 10000.0, 0.0)  # 0: the flood
SERVICES = (1, 4, 16)
# Ports nobody uses in the lab: stand-ins for other watched services' published ports.
SPARE_PORT = 30000


@dataclass
class Point:
    label: str
    untraced: float  # req/s
    traced: float
    cpu_us: float  # tracer CPU (whole process) per request

    @property
    def ratio(self) -> float:
        return self.traced / self.untraced if self.untraced else 0.0


def measure(mode: str, seconds: float, conns: int, rate: float, flt: Filter,
            label: str) -> Point:
    base = lab.flood(mode, seconds, conns, rate)  # type: ignore[arg-type]
    t = traced_run(mode, seconds, conns, full=True, flt=flt, rate=rate)
    return Point(label, base, t.rate, 1e6 * t.process_cpu_s / max(t.requests, 1))


def table(points: list[Point]) -> str:
    rows = ["| offered | untraced req/s | traced req/s | ratio | tracer CPU per request |",
            "| --- | --- | --- | --- | --- |"]
    rows += [f"| {p.label} | {p.untraced:.0f} | {p.traced:.0f} | {p.ratio:.3f} | "
             f"{p.cpu_us:.0f} us |" for p in points]
    return "\n".join(rows)


def plot(load: list[Point], services: list[Point], path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, pts, xlabel in ((axes[0], load, "offered load (requests/s, new connection each)"),
                            (axes[1], services, "watched services (flood)")):
        xs = range(len(pts))
        ax.plot(xs, [p.ratio for p in pts], "o-", color="tab:blue")
        ax.set_ylabel("traced / untraced throughput", color="tab:blue")
        ax.set_ylim(0, 1.1)
        ax.axhline(0.95, color="tab:blue", linestyle=":", linewidth=1)
        ax.set_xticks(list(xs), [p.label for p in pts])
        ax.set_xlabel(xlabel)
        cpu = ax.twinx()
        cpu.plot(xs, [p.cpu_us for p in pts], "s--", color="tab:red")
        cpu.set_ylabel("tracer CPU per request (us)", color="tab:red")
        cpu.set_ylim(bottom=0)
    fig.suptitle("swarmtrace trace (full live view) on the lab's routing mesh, 2 vCPU")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    return True


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--mode", default="mesh", choices=("mesh", "vip"))
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--conns", type=int, default=4)
    ap.add_argument("--out", type=Path, default=Path("docs/bench/scale.png"))
    args = ap.parse_args()
    was_up = lab.status() is not None
    lab.up()
    try:
        lab.flood(args.mode, 1.0, args.conns)  # warm up
        print(f"load average {os.getloadavg()[0]:.2f} at start", flush=True)
        load = [measure(args.mode, args.seconds, args.conns, r, FILTER,
                        f"{r:.0f}/s" if r else "flood") for r in RATES]
        services = []
        for n in SERVICES:
            ports = FILTER.ports + tuple(range(SPARE_PORT, SPARE_PORT + n - 1))
            flt = Filter(ports=ports, addrs=FILTER.addrs)
            services.append(measure(args.mode, args.seconds, args.conns, 0.0, flt, str(n)))
        print(table(load))
        print()
        print(table(services).replace("| offered |", "| watched services |"))
        print(f"load average {os.getloadavg()[0]:.2f} at the end")
        if plot(load, services, args.out):
            print(f"picture: {args.out}")
        else:
            print("no picture: matplotlib is not installed (pip install matplotlib)")
    finally:
        if not was_up:
            lab.down()


if __name__ == "__main__":
    main()
