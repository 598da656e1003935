#!/usr/bin/env python3
"""Record the bundled sample trace (tracer/data/sample.swt) from real runs on this machine:
DNS round robin on a real 2-node swarm, routing mesh and VIP through the netns lab.

This kernel has no IPVS, so Swarm cannot carry VIP or mesh traffic here: those two modes come
from the netns lab with its iptables stand-in, and the file's header says so."""

from __future__ import annotations

import time
from pathlib import Path

from tracer import lab
from tracer.enrich import open_names
from tracer.lab import swarm
from tracer.pipeline import Pipeline
from tracer.probes.core import CoreSource
from tracer.source import Filter
from tracer.tracefile.record import recording

OUT = Path(__file__).resolve().parents[1] / "tracer" / "data" / "sample.swt"
FILTER = Filter(ports=(8080, 80, 53), addrs=("10.0.0.9",))
NOTES = (
    "sample: DNS round robin from a real 2-node Docker Swarm (vote, client, overlay1)",
    "sample: routing mesh and VIP from the swarmtrace netns lab; the recording kernel has no "
    "IPVS, so an iptables round-robin DNAT stands in for IPVS there",
)


def main() -> None:
    lab.up()
    swarm.up(nodes=2)
    try:
        OUT.unlink(missing_ok=True)
        with CoreSource(FILTER) as src, open_names() as names:
            pipe = Pipeline(src, names, "IPVS stand-in: iptables round-robin DNAT")
            with recording(pipe, OUT, FILTER, notes=NOTES):
                pipe.poll(1.0)  # attach to every netns before traffic starts
                answers = [*swarm.traffic("dnsrr", 8), *lab.traffic("mesh", 8, 0.05),
                           *lab.traffic("vip", 6, 0.05)]
                deadline = time.monotonic() + 5
                while time.monotonic() < deadline:
                    pipe.poll(0.2)
        OUT.chmod(0o644)  # traces are private (0600) by default; this one ships with the tool
        print(f"{OUT}: {OUT.stat().st_size} bytes, {len(answers)} requests sent")
    finally:
        swarm.down()
        lab.down()


if __name__ == "__main__":
    main()
