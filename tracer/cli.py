"""`swarmtrace` command line: one subcommand per module in tracer.commands."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from tracer import __version__
from tracer.errors import SwarmtraceError

# Each module registers its own subparser with set_defaults(func=run).
COMMAND_MODULES = (
    "trace",
    "tui",
    "lab",
    "demo",
    "replay",
    "export",
    "info",
    "vm",
    "doctor",
    "swarm_lab",
    "check",
)

EPILOG = """examples:
  swarmtrace lab up                    build the routing-mesh lab (netns, no Docker)
  swarmtrace trace --port 8080         live: one block per request, hop by hop
  swarmtrace trace --json --count 10   JSON lines, one object per request
  swarmtrace lab traffic --count 10    send 10 requests through the lab
  swarmtrace lab down                  remove everything the lab made
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="swarmtrace",
        description="Trace Docker Swarm's service discovery and load balancing, "
        "request by request.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"swarmtrace {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging on stderr")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(f"tracer.commands.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="swarmtrace: %(message)s",
    )
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except SwarmtraceError as err:
        print(f"swarmtrace: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # `swarmtrace trace --json | head`: the reader left; not an error.
        sys.stderr.close()
        return 0
