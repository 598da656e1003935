"""Names at replay: the enrichment resolver rebuilt from a trace's topology records.

The records hold `Names.snapshot()` dicts (a time-stamped log of changes, see
tracer.enrich.history). A "snapshot" record replaces what came before; a "change" record
carries only new entries in its "changes" list and extends it. Because every entry is
time-stamped, the combined log resolves each event's names as of the event's time.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from tracer.enrich.history import SNAPSHOT_VERSION, recorded_names
from tracer.enrich.names import Names
from tracer.errors import TraceFileError
from tracer.tracefile.reader import TopologyRecord, open_trace

log = logging.getLogger(__name__)


def combined_snapshot(records: Iterable[TopologyRecord]) -> dict[str, Any] | None:
    """One snapshot dict holding every record's changes in file order, or None if none."""
    out: dict[str, Any] | None = None
    for rec in records:
        if not isinstance(rec.data, dict) or "changes" not in rec.data:
            continue  # not a names log (the reader checked the ones that are)
        if rec.kind == "snapshot" or out is None:
            # A change first: its snapshot was damaged and skipped; its entries still count.
            out = {"version": SNAPSHOT_VERSION, **rec.data}
            out["changes"] = list(rec.data.get("changes") or ())
        else:
            out["changes"].extend(rec.data.get("changes") or ())
    return out


def names_from_snapshot(snapshot: dict[str, Any] | None) -> Names | None:
    """The replay resolver; None (raw netns inodes and addresses) if the trace has no names."""
    if snapshot is None:
        return None
    try:
        return recorded_names(snapshot)
    except TraceFileError as err:
        log.warning("%s; showing raw netns inodes and addresses", err)
        return None


def trace_names(path: str | os.PathLike[str]) -> Names | None:
    """The names recorded in a trace file, as one resolver."""
    with open_trace(path) as reader:
        return names_from_snapshot(combined_snapshot(reader.topology()))


@dataclass(frozen=True)
class Inventory:
    """What a trace's names mention: for `swarmtrace info`."""

    nodes: tuple[str, ...]
    services: tuple[str, ...]
    netns: tuple[str, ...]


def inventory(snapshot: dict[str, Any] | None) -> Inventory:
    nodes: set[str] = set()
    services: set[str] = set()
    netns: set[str] = set()
    for change in (snapshot or {}).get("changes") or ():
        value = change.get("value") if isinstance(change, dict) else None
        if isinstance(value, dict):
            nodes.update(str(value[k]) for k in ("node",) if value.get(k))
            services.update(str(value[k]) for k in ("service",) if value.get(k))
            if change.get("kind") == "netns" and value.get("name"):
                netns.add(str(value["name"]))
        elif isinstance(value, str) and change.get("kind") in ("fwmarks", "lb_index", "ports"):
            services.add(value)
    return Inventory(tuple(sorted(nodes)), tuple(sorted(services)), tuple(sorted(netns)))
