"""`swarmtrace export FILE --pcapng OUT | --json OUT`: a trace for Wireshark or other tools."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TextIO

from tracer.commands.replay import trace_path
from tracer.errors import TraceFileError
from tracer.events import decode
from tracer.tracefile.pcapng import write_pcapng
from tracer.tracefile.reader import (
    EventChunk,
    LostRecord,
    TopologyRecord,
    TraceSummary,
    open_trace,
)
from tracer.tracefile.topology import trace_names

EXAMPLES = """examples:
  swarmtrace export mesh.swt --pcapng mesh.pcapng   one packet per hop, for Wireshark/tshark
  swarmtrace export --sample --pcapng sample.pcapng the bundled sample trace
  swarmtrace export mesh.swt --events -             every raw kernel event as JSON lines
the requests themselves as JSON lines: swarmtrace replay FILE --json
in Wireshark, filter on the hop comments: frame.comment contains "req #2 |" or "hop lb"
"""


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "export",
        help="convert a trace file to pcapng or JSON lines",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("file", nargs="?", type=Path, help="trace file (.swt)")
    p.add_argument("--sample", action="store_true", help="export the bundled sample trace")
    out = p.add_mutually_exclusive_group(required=True)
    out.add_argument("--pcapng", type=Path, metavar="OUT", help="write a pcapng file")
    out.add_argument(
        "--events",
        metavar="OUT",
        help="write the raw records as JSON lines: the header, then every event, topology "
        "and loss record in file order ('-' = stdout)",
    )
    # The old name of --events: `--json` elsewhere means requests, not raw records.
    out.add_argument("--json", dest="events", metavar="OUT", help=argparse.SUPPRESS)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    path = trace_path(args)
    if args.pcapng is not None:
        n = write_pcapng(path, args.pcapng, trace_names(path))
        print(f"swarmtrace: wrote {n} packets to {args.pcapng}", file=sys.stderr)
        return 0
    with _output(args.events) as out:
        n = write_json(path, out)
    if args.events != "-":
        print(f"swarmtrace: wrote {n} lines to {args.events}", file=sys.stderr)
    return 0


@contextmanager
def _output(name: str) -> Iterator[TextIO]:
    if name == "-":
        yield sys.stdout
        return
    try:
        f = open(name, "w", encoding="utf-8")  # noqa: SIM115 (closed below)
    except OSError as err:
        raise TraceFileError(f"cannot write {name}: {err.strerror}") from err
    with f:
        yield f


def _event_json(e: Any) -> dict[str, Any]:
    d: dict[str, Any] = {
        "type": "event",
        "ts_ns": e.ts_ns,
        "point": e.point.label,
        "netns": e.netns,
        "ifindex": e.ifindex,
        "skb": f"{e.skb:#x}",
        "proto": e.proto,
        "pkt": str(e.pkt),
    }
    if e.mark:
        d["mark"] = f"{e.mark:#x}"
    if e.tcp_flags:
        d["tcp_flags"] = e.tcp_flags
    if e.has_ct:
        d.update(ct=e.ct, ct_status=e.ct_status, ctinfo=e.ctinfo, orig=str(e.orig))
        d["reply"] = str(e.reply)
    if e.aux:
        d["aux"] = e.aux
    d["flags"] = e.flags
    return d


def write_json(trace: Path, out: TextIO) -> int:
    """The trace as JSON lines (first line: header with "type": "header"); returns lines."""
    lines = 0

    def emit(obj: dict[str, Any]) -> None:
        nonlocal lines
        out.write(json.dumps(obj, separators=(",", ":")) + "\n")
        lines += 1

    with open_trace(trace) as reader:
        emit({"type": "header", **reader.header.to_json()})
        for rec in reader:
            if isinstance(rec, EventChunk):
                for e in decode(rec.events):
                    emit(_event_json(e))
            elif isinstance(rec, TopologyRecord):
                emit({"type": "topology", "ts_ns": rec.ts_ns, "kind": rec.kind, "data": rec.data})
            elif isinstance(rec, LostRecord):
                emit({"type": "lost", "ts_ns": rec.ts_ns, "total": rec.total})
            elif isinstance(rec, TraceSummary):
                emit({"type": "summary", **{k: getattr(rec, k) for k in rec.__slots__}})
    return lines
