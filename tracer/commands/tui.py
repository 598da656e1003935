"""`swarmtrace tui`: live requests in the terminal UI (same filters as `trace`)."""

from __future__ import annotations

import argparse

from tracer.commands.trace import add_filter_args, add_swarm_args, filter_from_args
from tracer.source import Filter

EXAMPLES = """examples:
  swarmtrace tui --port 8080            live requests to published port 8080
  swarmtrace tui --addr 10.0.0.9 --step talk mode: one request, one hop per key press
  swarmtrace tui --swarm                on a manager: every node's agent in one view
keys: ? help, / filter, space pause, f follow, n next drop, 1 2 3 t screens, ctrl+p commands, q quit
"""


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "tui",
        help="live requests in a terminal UI (needs root)",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_filter_args(p)
    p.add_argument("--step", action="store_true", help="start in talk mode (one hop per key)")
    add_swarm_args(p)
    p.set_defaults(func=run)


def describe(flt: Filter) -> str:
    """The trace filters in words, for the status bar."""
    words = [f"port {p}" for p in flt.ports] + [f"addr {a}" for a in flt.addrs]
    return ", ".join(words)


def run(args: argparse.Namespace) -> int:
    from tracer.commands.trace import open_live

    flt = filter_from_args(args)
    # Probes attach before the screen switches: ProbeUnavailable then prints one plain line.
    with open_live(args, flt) as pipe:
        from tracer.tui import run_tui
        from tracer.tui.pipeline_feed import PipelineFeed

        run_tui(PipelineFeed(pipe, filters=describe(flt)), step=args.step, title="swarmtrace")
    return 0
