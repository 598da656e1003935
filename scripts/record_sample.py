#!/usr/bin/env python3
"""Record the bundled sample trace (tracer/data/sample.swt): Swarm's three ways of balancing
load on a real 2-node swarm, traced by the bcc backend on Debian's stock kernel, where IPVS is
real. The routing mesh, the VIP and DNS round robin (with Docker DNS's answers), with task,
node and service names from Docker.

Run on the host: boots the VM lab (about 6 minutes under emulation) and runs itself inside.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "tracer" / "data" / "sample.swt"
NOTES = ("sample: a real 2-node Docker Swarm (services vote, vote-vip, client on overlay1) "
         "in the stock-kernel VM lab, IPVS real, bcc backend",)


def record(out: Path) -> None:
    """Inside the guest: bring the swarm up, trace, send each kind of request, take it down."""
    from tracer.enrich import open_names
    from tracer.lab import swarm
    from tracer.pipeline import Pipeline
    from tracer.probes.bcc import BccSource
    from tracer.source import Filter
    from tracer.tracefile.record import recording

    flt = Filter(ports=(8080, 80, 53))
    swarm.up(nodes=2, progress=lambda s: print(s, file=sys.stderr))
    try:
        with BccSource(flt) as src, open_names() as names:
            pipe = Pipeline(src, names)
            with recording(pipe, out, flt, notes=NOTES):
                pipe.poll(1.0)
                answers = [*swarm.traffic("mesh", 6), *swarm.traffic("vip", 6),
                           *swarm.traffic("dnsrr", 6)]
                deadline = time.monotonic() + 5
                while time.monotonic() < deadline:
                    pipe.poll(0.2)
        print(f"{len(answers)} requests sent, {sum(a.ok for a in answers)} answered",
              file=sys.stderr)
    finally:
        swarm.down()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--in-guest", type=Path, metavar="FILE", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.in_guest:
        record(args.in_guest)
        return
    from tracer.vm import Guest, VmConfig

    with Guest(VmConfig(memory="3G"), progress=lambda s: print(s, file=sys.stderr)) as guest:
        tmp = guest.share / "sample.swt"
        res = guest.run(["python", "scripts/record_sample.py", "--in-guest", str(tmp)],
                        timeout=1200, stream=sys.stderr)
        if res.rc != 0:
            raise SystemExit(f"recording the sample failed in the VM (exit {res.rc})")
        shutil.copyfile(tmp, OUT)
    OUT.chmod(0o644)  # traces are private (0600) by default; this one ships with the tool
    print(f"{OUT}: {OUT.stat().st_size} bytes")


if __name__ == "__main__":
    main()
