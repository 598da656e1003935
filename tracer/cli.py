"""`swarmtrace` command line: one subcommand per module in tracer.commands."""

from __future__ import annotations

import argparse
import errno
import importlib
import logging
import os
import sys
from typing import NoReturn

from tracer import __version__
from tracer.errors import OutputError, SwarmtraceError

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
    "agent",
    "deploy",
    "check",
)

EPILOG = """examples:
  swarmtrace replay --sample           a real 2-node swarm, recorded: no root, no Docker (TUI)
  swarmtrace replay --sample --oneline one line per request, the three ways Swarm balances
  swarmtrace lab up                    build the routing-mesh lab (netns, no Docker)
  swarmtrace trace --port 8080         live: one block per request, hop by hop
  swarmtrace trace --json --count 10   JSON lines, one object per request
  swarmtrace lab traffic --count 10    send 10 requests through the lab
  swarmtrace lab down                  remove everything the lab made
"""


class _Parser(argparse.ArgumentParser):
    """Usage errors as one line that says what is wrong and where help is (exit status 2)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
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
    _remember_parsers(parser)
    return parser


def _remember_parsers(parser: argparse.ArgumentParser) -> None:
    """Each (sub)command records its own parser, so a wrong option shows that usage."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                child.set_defaults(parser_=child)
                _remember_parsers(child)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        # argparse would blame the top-level command: say it in the subcommand's words.
        owner: argparse.ArgumentParser = getattr(args, "parser_", None) or parser
        owner.error(f"unrecognized arguments: {' '.join(unknown)}")
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="swarmtrace: %(message)s",
    )
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        status = int(args.func(args) or 0)
        sys.stdout.flush()  # a full disk or a closed pipe shows here, not at interpreter exit
        return status
    except SwarmtraceError as err:
        print(f"swarmtrace: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # `swarmtrace trace --json | head`: the reader left; not an error.
        _drop_stdout()
        return 0
    except OSError as err:
        # Mostly writing output (ENOSPC, EIO): one line, not a chain of tracebacks.
        print(f"swarmtrace: {_os_error(err)}", file=sys.stderr)
        _drop_stdout()
        return OutputError.exit_code if err.errno in _WRITE_ERRNOS else 1


_WRITE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EIO})


def _os_error(err: OSError) -> str:
    reason = err.strerror or str(err)
    if err.errno not in _WRITE_ERRNOS:
        return f"{reason}: {err.filename}" if err.filename else reason
    line = f"cannot write {err.filename or 'standard output'}: {reason}"
    if err.errno in (errno.ENOSPC, errno.EDQUOT):
        line += ": free some space and run it again"
    return line


def _drop_stdout() -> None:
    """Point stdout at /dev/null so that the interpreter's last flush cannot fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):  # stdout already closed or not a real file
        pass
