"""The kernel programs' run time in the lab flood, this checkout's CO-RE object against another
build's (`--against DIR`, e.g. main's bpf/build), in alternating `trace -w -q` runs with the
kernel's run-time stats on: ns per run and per request of each program. Alternating runs share
the machine's drifting load, which makes their wall-clock ratios noisy; BPF time per request
moves far less.

Run time is read from this run's own programs (by fd). Another tracer's st_nf_hook loaded
meanwhile (another checkout's tests, a second swarmtrace) still runs in the lab's hooks and
takes the machine's time, so each run says how many were loaded before it started."""

from __future__ import annotations

import argparse
import json
import os
import subprocess

from tracer import lab
from tracer.bench.builds import THIS_BUILD, add_against, check_against, lab_up, object_dir
from tracer.bench.overhead import traced_run


def loaded_nf_programs() -> int:
    """How many st_nf_hook programs the kernel has loaded now (any process's)."""
    out = subprocess.run(["bpftool", "prog", "show", "--json"], capture_output=True, text=True,
                         check=True).stdout
    return sum(p.get("name") == "st_nf_hook" for p in json.loads(out))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    add_against(ap)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=5.0)
    args = ap.parse_args()
    check_against(args.against)
    with lab_up():
        lab.flood("mesh", 1.0, 4)  # warm up
        print(f"load average {os.getloadavg()[0]:.2f} at start")
        for _ in range(args.rounds):
            for name, path in (("other", args.against), ("this", THIS_BUILD)):
                if foreign := loaded_nf_programs():
                    print(f"note: {foreign} st_nf_hook of another tracer loaded: it runs in "
                          "the same hooks, so this run's requests/s is lower", flush=True)
                with object_dir(path):
                    t = traced_run("mesh", args.seconds, 4, full=False, stats=True)
                reqs = max(t.requests, 1)
                progs = "; ".join(f"{prog} {ns:.0f} ns x {runs / reqs:.1f} = "
                                  f"{ns * runs / reqs / 1000:.1f} us"
                                  for prog, (ns, runs) in sorted(t.prog_ns.items()))
                print(f"{name:<5} {t.rate:5.0f} req/s, {t.events / reqs:.1f} events and lost "
                      f"{t.lost}; per request: {progs}", flush=True)
        print(f"load average {os.getloadavg()[0]:.2f} at the end")


if __name__ == "__main__":
    main()
