"""`swarmtrace export FILE --pcapng OUT | --json OUT`: a trace for Wireshark or other tools."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, TextIO

from tracer.commands.replay import trace_path
from tracer.errors import EXIT_TRACE_DAMAGED, OutputError
from tracer.events import decode
from tracer.tracefile.output import OutputFile
from tracer.tracefile.pcapng import write_pcapng
from tracer.tracefile.reader import (
    EventChunk,
    LostRecord,
    TopologyRecord,
    TraceDamage,
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
    out_name = args.pcapng if args.pcapng is not None else args.events
    if out_name != "-" and _same_file(path, Path(out_name)):
        raise OutputError(f"{out_name} is the trace being exported: give another output name")
    if args.pcapng is not None:
        names = trace_names(path)
        with OutputFile(args.pcapng) as out:
            n = write_pcapng(path, out.reopen_path, names)
        wrote = f"wrote {n} packets to {args.pcapng}{out.replaced_note()}"
        print(f"swarmtrace: {wrote}", file=sys.stderr)
        return EXIT_TRACE_DAMAGED if trace_damaged(path) else 0
    if args.events == "-":
        n, damaged = write_json(path, sys.stdout)
        return EXIT_TRACE_DAMAGED if damaged else 0
    with OutputFile(args.events) as out, open(out.fd, "w", encoding="utf-8", closefd=False) as f:
        n, damaged = write_json(path, f)
    print(f"swarmtrace: wrote {n} lines to {args.events}{out.replaced_note()}", file=sys.stderr)
    return EXIT_TRACE_DAMAGED if damaged else 0


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.samefile(b)
    except OSError:  # one of them does not exist (yet): not the same
        return False


def trace_damaged(trace: Path) -> bool:
    """True if reading `trace` finds damage (write_pcapng's reader has logged it already)."""
    with open_trace(trace, report=False) as reader:
        for _ in reader:
            pass
        return bool(reader.damaged_parts)


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


def write_json(trace: Path, out: TextIO) -> tuple[int, bool]:
    """The trace as JSON lines (first line: header with "type": "header", damage as lines
    with "type": "damage" where it was found); returns (lines, damaged)."""
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
            elif isinstance(rec, TraceDamage):
                emit({"type": "damage", **rec.to_json()})
        return lines, bool(reader.damaged_parts)
