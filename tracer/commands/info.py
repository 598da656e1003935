"""`swarmtrace info FILE`: what a trace holds: header, time span, counts, lost events, names."""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from tracer.commands.replay import trace_path
from tracer.enrich.names import Names
from tracer.errors import EXIT_TRACE_DAMAGED
from tracer.events import Point
from tracer.tracefile.reader import (
    EventChunk,
    LostRecord,
    TopologyRecord,
    TraceReader,
    TraceSummary,
    open_trace,
)
from tracer.tracefile.topology import combined_snapshot, inventory, names_from_snapshot


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("info", help="describe a trace file: header, span, requests, events, names")
    p.add_argument("file", nargs="?", type=Path, help="trace file (.swt)")
    p.add_argument("--sample", action="store_true", help="describe the bundled sample trace")
    p.add_argument("--json", action="store_true", help="one JSON object instead of text")
    p.set_defaults(func=run)


@dataclass
class _Tally:
    events: int = 0
    chunks: int = 0
    first_ts: int | None = None
    last_ts: int | None = None
    lost: int = 0
    points: Counter[int] = field(default_factory=Counter)
    netns: Counter[int] = field(default_factory=Counter)
    topology: list[TopologyRecord] = field(default_factory=list)
    summary: TraceSummary | None = None

    def add(self, events: np.ndarray) -> None:
        self.events += len(events)
        self.chunks += 1
        ts = events["ts_ns"]
        lo, hi = int(ts.min()), int(ts.max())
        self.first_ts = lo if self.first_ts is None else min(self.first_ts, lo)
        self.last_ts = hi if self.last_ts is None else max(self.last_ts, hi)
        for values, counter in ((events["point"], self.points), (events["netns"], self.netns)):
            keys, counts = np.unique(values, return_counts=True)
            counter.update(dict(zip(keys.tolist(), counts.tolist(), strict=True)))


def _tally(reader: TraceReader) -> _Tally:
    t = _Tally()
    for rec in reader:
        if isinstance(rec, EventChunk):
            if len(rec.events):
                t.add(rec.events)
        elif isinstance(rec, TopologyRecord):
            t.topology.append(rec)
        elif isinstance(rec, LostRecord):
            t.lost = max(t.lost, rec.total)
        elif isinstance(rec, TraceSummary):
            t.summary = rec
            t.lost = max(t.lost, rec.lost)
    return t


def _wall(ns: int) -> str:
    return datetime.fromtimestamp(ns / 1e9, UTC).isoformat(timespec="milliseconds")


def requests_of(path: Path, names: Names | None) -> dict[str, Any]:
    """The trace's requests as the replay correlates them: how many, by status and mode."""
    from tracer.tracefile.requests import trace_requests

    reqs = trace_requests(path, names)
    return {
        "total": len(reqs),
        "by_status": dict(Counter(str(r.status) for r in reqs).most_common()),
        "by_mode": dict(Counter(r.mode or "?" for r in reqs).most_common()),
    }


def describe(path: Path) -> dict[str, Any]:
    """Everything `info` shows, as a JSON-able dict."""
    with open_trace(path) as reader:
        h = reader.header
        t = _tally(reader)
        damage = str(reader.damage) if reader.damage else None
        damage_json = reader.damage_json()
    snapshot = combined_snapshot(t.topology)
    inv = inventory(snapshot)
    names = names_from_snapshot(snapshot)
    size = path.stat().st_size
    netns = {}
    for inode, n in t.netns.most_common():
        ns = names.netns(inode, t.first_ts or 0) if names else None
        netns[ns.label if ns else f"netns:{inode}" if inode else "no netns (kernel gave none)"] = n
    return {
        "file": str(path),
        "bytes": size,
        "bytes_per_event": round(size / t.events, 1) if t.events else None,
        "schema": h.schema,
        "tracer_version": h.tracer_version,
        "event_version": h.event_version,
        "backend": h.backend,
        "kernel": h.kernel,
        "hostname": h.hostname,
        "notes": list(h.notes),
        "lb_note": h.lb_note or None,
        "filters": dict(h.filters),
        "start": _wall(h.start_wall_ns),
        "first_event": _wall(h.wall_ns(t.first_ts)) if t.first_ts is not None else None,
        "last_event": _wall(h.wall_ns(t.last_ts)) if t.last_ts is not None else None,
        "duration_s": round((t.last_ts - t.first_ts) / 1e9, 3)
        if t.first_ts is not None and t.last_ts is not None
        else 0.0,
        "requests": requests_of(path, names) if damage is None else None,
        "events": t.events,
        "event_chunks": t.chunks,
        "lost_events": t.lost,
        "points": {
            (Point(p).label if p in {int(x) for x in Point} else str(p)): n
            for p, n in t.points.most_common()
        },
        "netns": netns,
        "topology_records": len(t.topology),
        "nodes": sorted(set(h.nodes) | set(inv.nodes)),
        "services": list(inv.services),
        "complete": t.summary is not None,
        "end_reason": t.summary.reason if t.summary else None,
        **damage_json,
        "damage_summary": damage,
    }


def _text(d: dict[str, Any]) -> str:
    def kv(counts: dict[str, int]) -> str:
        return ", ".join(f"{k} {v}" for k, v in counts.items()) or "-"

    state = "complete" if d["complete"] else "incomplete (no closing summary)"
    if d["end_reason"] not in (None, "complete"):
        state += f", ended by {d['end_reason']}"
    lines = [
        f"file       {d['file']} ({d['bytes']} bytes, {d['bytes_per_event'] or '-'} bytes/event)",
        f"format     trace schema {d['schema']}, events v{d['event_version']}, "
        f"written by swarmtrace {d['tracer_version']}",
        f"recorded   {d['backend']} backend on {d['hostname'] or '?'}, kernel {d['kernel']}",
        f"started    {d['start']}",
        f"span       {d['first_event'] or '-'} .. {d['last_event'] or '-'} ({d['duration_s']} s)",
        _requests_line(d["requests"]),
        f"events     {d['events']} events in {d['event_chunks']} chunks (kernel probe hits), "
        f"{d['lost_events']} lost in the kernel",
        f"  by point {kv(d['points'])}",
        *_drop_note(d),
        f"  by netns {kv(d['netns'])}",
        f"nodes      {', '.join(d['nodes']) or '-'}",
        f"services   {', '.join(d['services']) or '-'}",
        f"topology   {d['topology_records']} records",
        f"filters    {json.dumps(d['filters'], sort_keys=True)}",
        f"state      {state}",
    ]
    lines += [f"note       {n}" for n in d["notes"]]
    if d["lb_note"]:
        lines.append(f"lb         {d['lb_note']}")
    if d["damage_summary"]:
        lines.append(f"damage     {d['damage_summary']}")
    return "\n".join(lines)


def _drop_note(d: dict[str, Any]) -> list[str]:
    """`drop` counts kernel events, not requests: say so next to the number."""
    drops = d["points"].get("drop", 0)
    if not drops:
        return []
    req = d["requests"]
    dropped = req["by_status"].get("dropped", 0) if req else "?"
    return [f"           {drops} drop events = packets the kernel freed on an error path, "
            f"any packet; {dropped} requests were dropped"]


def _requests_line(req: dict[str, Any] | None) -> str:
    if req is None:
        return "requests   - (the file is damaged: replay it to see what it holds)"
    status = ", ".join(f"{n} {k}" for k, n in req["by_status"].items()) or "-"
    modes = ", ".join(f"{n} {k}" for k, n in req["by_mode"].items()) or "-"
    return f"requests   {req['total']} ({status}; {modes})"


def run(args: argparse.Namespace) -> int:
    d = describe(trace_path(args))
    print(json.dumps(d, indent=2) if args.json else _text(d), file=sys.stdout)
    return EXIT_TRACE_DAMAGED if d["damage"] else 0
