"""`swarmtrace demo`: build the lab, send requests through it, show them live, clean up."""

from __future__ import annotations

import argparse
import itertools
import sys
import threading

from tracer.commands.trace import show
from tracer.sinks.text import TextSink
from tracer.source import Filter

# The netns lab's published port (mesh) and VIP: what the demo traces.
DEMO_FILTER = Filter(ports=(8080,), addrs=("10.0.0.9",))
# The swarm lab: published port, the tasks' port (VIP, DNS round robin), Docker's DNS.
SWARM_FILTER = Filter(ports=(8080, 80, 53))


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("demo", help="live demo on a lab swarmtrace builds itself (needs root)")
    p.add_argument("--step", action="store_true", help="talk mode: one hop per key press")
    p.add_argument("--no-tui", dest="no_tui", action="store_true",
                   help="text output even on a terminal")
    p.add_argument("--text", dest="no_tui", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--count", type=int, default=10,
                   help="text mode: stop after N requests (default 10)")
    p.add_argument("--interval", type=float, default=0.5, help="seconds between requests")
    p.add_argument("--swarm", action="store_true",
                   help="a real 2-node Docker Swarm instead of the netns lab (routing mesh "
                   "and VIP where the kernel has IPVS, DNS round robin everywhere)")
    p.add_argument("--vm", action="store_true",
                   help="run the swarm demo in the stock-kernel VM: Docker's real routing mesh "
                   "through IPVS, traced by the bcc backend")
    p.set_defaults(func=run)


def _send(stop: threading.Event, interval_s: float, swarm: bool) -> None:
    from tracer import lab
    from tracer.lab import swarm as swarm_lab

    if swarm:
        up = swarm_lab.load()
        modes = ("mesh", "vip", "dnsrr") if up is not None and up.ipvs else ("dnsrr",)
    else:
        modes = ("mesh", "mesh", "vip")
    for mode in itertools.cycle(modes):
        if stop.wait(interval_s):
            return
        if swarm:
            swarm_lab.traffic(mode, 1)
        else:
            lab.traffic(mode, 1)  # type: ignore[arg-type]


def run(args: argparse.Namespace) -> int:
    if args.vm:
        return _run_in_vm(args)
    from tracer import lab
    from tracer.lab import swarm as swarm_lab
    from tracer.live import open_pipeline

    if args.swarm:
        notes = swarm_lab.up(nodes=2, progress=lambda line: print(line, file=sys.stderr)).notes
    else:
        notes = lab.up().notes
    for note in notes:
        print(f"swarmtrace: {note}", file=sys.stderr)
    stop = threading.Event()
    sender = threading.Thread(target=_send, args=(stop, args.interval, args.swarm), daemon=True)
    try:
        with open_pipeline("auto", SWARM_FILTER if args.swarm else DEMO_FILTER) as pipe:
            sender.start()
            if sys.stdout.isatty() and not args.no_tui:
                from tracer.tui import run_tui
                from tracer.tui.pipeline_feed import PipelineFeed

                run_tui(PipelineFeed(pipe, filters="port 8080, VIP 10.0.0.9"), step=args.step,
                        title="swarmtrace demo: routing mesh and VIP lab")
            else:
                show(pipe, TextSink(sys.stdout), args.count, deadline=None)
    finally:
        stop.set()
        if sender.is_alive():
            sender.join(timeout=5)
        if args.swarm:
            swarm_lab.down()
        else:
            lab.down()
    return 0


def _run_in_vm(args: argparse.Namespace) -> int:
    """The swarm demo on Debian's stock kernel: Docker's routing mesh and VIP run on real
    IPVS there, and `auto` picks the bcc backend, which reports IPVS's own choice."""
    from tracer.commands.vm import run_in_guest
    from tracer.vm import VmConfig

    argv = ["swarmtrace", "demo", "--swarm", "--no-tui", "--count", str(args.count),
            "--interval", str(args.interval)]
    return run_in_guest(VmConfig(memory="3G"), argv, timeout=1800.0)
