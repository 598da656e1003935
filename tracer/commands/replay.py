"""`swarmtrace replay FILE`: the requests of a recorded trace; no root, BPF or Docker needed."""

from __future__ import annotations

import argparse
import importlib.resources
import importlib.util
import ipaddress
import json
import logging
import sys
from pathlib import Path

from tracer.commands import argtypes
from tracer.errors import EXIT_TRACE_DAMAGED, TraceFileError
from tracer.gc_pacing import paced_gc
from tracer.model import JSON_SCHEMA_VERSION, Request
from tracer.pipeline import Pipeline
from tracer.sinks.service_name import service_name
from tracer.sinks.step_text import StepSink
from tracer.sinks.text import TIMES_LEGEND, JsonSink, Sink, TextSink
from tracer.source import Filter
from tracer.tracefile.replay import ReplaySource
from tracer.tracefile.topology import trace_names

log = logging.getLogger(__name__)

EXAMPLES = """examples:
  swarmtrace replay --sample                 the bundled trace of a real 2-node swarm (TUI)
  swarmtrace replay --sample --oneline       one line per request, even in a terminal
  swarmtrace replay --sample --present       talk mode for a projector: the path as a picture
  swarmtrace replay --sample --step --no-tui talk mode in a plain terminal: Enter = next hop
  swarmtrace replay mesh.swt --json          JSON lines, same schema as `trace --json`
  swarmtrace replay mesh.swt --service vote  only the requests of service vote
  swarmtrace replay mesh.swt --speed 1       paced as recorded (0.25 = four times slower)
hop times are since each request's first packet; --oneline, --count, --json, --no-tui and
--step --no-tui print text; otherwise a terminal gets the TUI.
"""


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "replay",
        help="replay a recorded trace file (no root needed)",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("file", nargs="?", type=Path, help="trace file (.swt)")
    p.add_argument("--sample", action="store_true", help="replay the bundled sample trace")
    p.add_argument("--json", action="store_true", help="one JSON object per request per line")
    p.add_argument("--oneline", action="store_true", help="summary line only, no hop lines")
    p.add_argument(
        "--speed", type=argtypes.speed, default=None, help="pace by recorded time (1 = real time)"
    )
    p.add_argument("--count", type=argtypes.count, default=0, help="stop after N requests")
    p.add_argument(
        "--port", type=argtypes.port, action="append", default=[], help="port of interest"
    )
    p.add_argument(
        "--addr", type=ipv4, action="append", default=[], help="IPv4 address of interest"
    )
    p.add_argument(
        "--service", action="append", default=[], metavar="NAME",
        help="only requests of this Swarm service (exact name; repeatable)",
    )
    p.add_argument(
        "--no-tui", dest="no_tui", action="store_true",
        help="text output even when stdout is a terminal",
    )
    p.add_argument("--text", dest="no_tui", action="store_true", help=argparse.SUPPRESS)
    p.add_argument(
        "--step", action="store_true",
        help="talk mode, one hop per key: in the TUI, or with --no-tui in a plain terminal",
    )
    p.add_argument(
        "--present", action="store_true",
        help="TUI: talk mode in the presentation layout (for a projector; p toggles it)",
    )
    p.set_defaults(func=run)


def ipv4(text: str) -> str:
    try:
        return str(ipaddress.IPv4Address(text))
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"not an IPv4 address: {text!r}") from err


def sample_path() -> Path:
    """The bundled sample trace (tracer/data/sample.swt)."""
    path = Path(str(importlib.resources.files("tracer") / "data" / "sample.swt"))
    if not path.is_file():
        raise TraceFileError(
            f"the bundled sample trace is missing ({path}): reinstall swarmtrace or "
            "replay a file of your own"
        )
    return path


def trace_path(args: argparse.Namespace) -> Path:
    if args.sample == (args.file is not None):
        raise TraceFileError("give a trace FILE or --sample (one of them)")
    return sample_path() if args.sample else Path(args.file)


def open_tui(path: Path, args: argparse.Namespace) -> int | None:
    """The TUI (issue 6) on the replay; None if it cannot start here (text is shown instead)."""
    if importlib.util.find_spec("textual") is None:
        log.info("no TUI (textual is not installed): printing text")
        return None
    from tracer.tui import run_tui
    from tracer.tui.pipeline_feed import replay_feed

    words = [f"port {p}" for p in args.port] + [f"addr {a}" for a in args.addr]
    query = " ".join(f"service:{s}" for s in args.service)
    with ReplaySource(path) as source:
        pipe = Pipeline(source, trace_names(path), source.header.lb_note)
        feed = replay_feed(pipe, speed=args.speed or 1.0, filters=", ".join(words))
        run_tui(feed, step=args.step, title=f"swarmtrace replay {path.name}", query=query,
                present=args.present)
        return EXIT_TRACE_DAMAGED if source.damage else 0


def wants_text(args: argparse.Namespace) -> bool:
    """Every flag that only makes sense for text says so; otherwise a terminal gets the TUI."""
    return bool(args.json or args.no_tui or args.oneline or args.count) or not sys.stdout.isatty()


def _ask(prompt: str) -> str:
    try:
        return input(prompt)
    except EOFError:
        return ""


def _sink(args: argparse.Namespace) -> Sink | StepSink:
    if args.json:
        return JsonSink(sys.stdout)
    if args.step:
        return StepSink(sys.stdout, _ask if sys.stdin.isatty() else None)
    return TextSink(sys.stdout, hops=not args.oneline)


def run(args: argparse.Namespace) -> int:
    path = trace_path(args)
    if not wants_text(args):
        status = open_tui(path, args)
        if status is not None:
            return status
    flt = Filter(ports=tuple(args.port), addrs=tuple(args.addr))
    services = set(args.service)
    sink = _sink(args)
    shown = 0
    with ReplaySource(path, args.speed) as source:
        if isinstance(sink, TextSink | StepSink) and not args.oneline:
            print(f"swarmtrace: {TIMES_LEGEND}", file=sys.stderr)
        pipe = Pipeline(source, trace_names(path), source.header.lb_note)
        with paced_gc() as between_polls:
            while not (args.count and shown >= args.count) and not (
                isinstance(sink, StepSink) and sink.quit
            ):
                between_polls()
                done = source.finished
                for req in pipe.flush() if done else pipe.poll(0.2):
                    if matches(req, flt) and of_service(req, services) \
                            and not (args.count and shown >= args.count):
                        sink.write(req)
                        shown += 1
                if done:
                    break
        damage = source.damage_json()
    sink.close()
    if damage["damaged_parts"] and args.json:
        # The request lines are valid but not all there: say so in the stream as well.
        line = {"v": JSON_SCHEMA_VERSION, "type": "damage", **damage}
        print(json.dumps(line, separators=(",", ":")))
    return EXIT_TRACE_DAMAGED if damage["damaged_parts"] else 0


def of_service(req: Request, services: set[str]) -> bool:
    """A request of one of these services: by its backend, or a DNS query about its name."""
    return not services or service_name(req) in services


def matches(req: Request, flt: Filter) -> bool:
    """Live filters select flows by port/address anywhere along their NAT chain: so here."""
    if not (flt.ports or flt.addrs):
        return True
    flows = [req.client] + [f for h in req.hops for f in (h.before, h.after) if f is not None]
    ports = {p for f in flows for p in (f.sport, f.dport)}
    addrs = {a for f in flows for a in (f.saddr, f.daddr)}
    if req.backend_addr:
        addr, _, port = req.backend_addr.rpartition(":")
        addrs.add(addr)
        ports.add(int(port))
    return bool(ports & set(flt.ports)) or bool(addrs & set(flt.addrs))
