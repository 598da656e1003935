"""`swarmtrace trace`: live requests from the kernel, as text blocks or JSON lines."""

from __future__ import annotations

import argparse
import signal
import sys
import time
from types import FrameType

from tracer.sinks.text import JsonSink, TextSink
from tracer.source import Filter

EXAMPLES = """examples:
  swarmtrace trace --port 8080            requests to published port 8080, hop by hop
  swarmtrace trace --json --count 10      10 requests as JSON lines, then exit
  swarmtrace trace --addr 10.0.0.9 --timeout 30
"""


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("trace", help="trace requests live (needs root)", epilog=EXAMPLES,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    add_filter_args(p)
    p.add_argument("--json", action="store_true", help="one JSON object per request per line")
    p.add_argument("--oneline", action="store_true", help="summary line only, no hop lines")
    p.add_argument("--count", type=int, default=0, help="exit after N requests")
    p.add_argument("--timeout", type=float, default=0.0, help="exit after S seconds")
    p.set_defaults(func=run)


def add_filter_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--port", type=int, action="append", default=[],
                   help="port of interest (repeatable); flows keep matching through NAT")
    p.add_argument("--addr", action="append", default=[], help="IPv4 address of interest")
    p.add_argument("--all-packets", action="store_true",
                   help="every packet, not only connection start/end (costs more)")
    p.add_argument("--devices", action="store_true", help="also device rx/tx crossings")
    p.add_argument("--backend", choices=("auto", "core", "bcc"), default="auto",
                   help="probe backend (default: auto)")


def filter_from_args(args: argparse.Namespace) -> Filter:
    return Filter(ports=tuple(args.port), addrs=tuple(args.addr),
                  all_packets=args.all_packets, devices=args.devices)


def _term(signum: int, frame: FrameType | None) -> None:
    # SIGTERM ends a trace like Ctrl-C: detach and flush on the way out.
    raise KeyboardInterrupt


def run(args: argparse.Namespace) -> int:
    from tracer.live import open_pipeline

    signal.signal(signal.SIGTERM, _term)
    sink = JsonSink(sys.stdout) if args.json else TextSink(sys.stdout, hops=not args.oneline)
    deadline = time.monotonic() + args.timeout if args.timeout else None
    shown = 0
    with open_pipeline(args.backend, filter_from_args(args)) as pipe:
        for note in pipe.source.info.notes:
            print(f"swarmtrace: {note}", file=sys.stderr)
        try:
            while not (args.count and shown >= args.count):
                if deadline is not None and time.monotonic() >= deadline:
                    break
                for req in pipe.poll(0.2):
                    sink.write(req)
                    shown += 1
                    if args.count and shown >= args.count:
                        break
        except KeyboardInterrupt:
            for req in pipe.flush():
                sink.write(req)
    sink.close()
    return 0
