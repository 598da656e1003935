"""The request list's columns: what each shows and how wide it may be."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass

from rich.style import Style
from rich.text import Text

from tracer.model import HopKind, Request
from tracer.tui.store import task_of


@dataclass(frozen=True)
class Column:
    title: str
    width: int
    drop_order: int  # the smallest is dropped first when the screen is narrow; 99 = never
    cell: Callable[[Request, int], str]  # (request, clock offset ns) -> text
    right: bool = False


def _time(r: Request, offset_ns: int) -> str:
    # Minutes, seconds and milliseconds of the wall clock: the hour rarely matters in a list.
    secs, ns = divmod(r.start_ns + offset_ns, 1_000_000_000)
    return time.strftime("%M:%S", time.gmtime(secs)) + f".{ns // 1_000_000:03d}"


def _entry(r: Request, _: int) -> str:
    # The routing mesh is entered at the node whose host DNATs the published port.
    dnat = next((h for h in r.hops if h.kind is HopKind.DNAT), None) if r.mode == "mesh" else None
    return f"{dnat.node}:{r.client.dport}" if dnat is not None and dnat.node else r.client.dst


def _node(r: Request, _: int) -> str:
    deliver = next((h for h in r.hops if h.kind is HopKind.DELIVER), None)
    return deliver.node if deliver is not None else ""


def _latency(r: Request, _: int) -> str:
    ms = r.reply_ms
    return "" if ms is None else f"{ms:.2f}ms"


COLUMNS = (
    Column("start UTC", 9, 1, _time),
    Column("client", 20, 99, lambda r, _: r.client.src),
    Column("entry", 18, 2, _entry),
    Column("mode", 5, 4, lambda r, _: r.mode),
    Column("service", 9, 3, lambda r, _: r.service),
    Column("task", 15, 99, lambda r, _: task_of(r)),
    Column("node", 5, 5, _node),
    Column("latency", 7, 99, _latency, right=True),
    Column("status", 8, 99, lambda r, _: str(r.status)),
)
# Room left over goes to the names, up to these widths (a task is service.slot.id).
GROW = {"task": 26, "service": 18, "client": 21, "entry": 21}


def fit_columns(width: int) -> tuple[Column, ...]:
    """The columns that fit in width, dropping the least important first; what is left over
    widens the names, so they are not cut where there is room."""
    cols = list(COLUMNS)
    while sum(c.width + 1 for c in cols) > width:
        victim = min(cols, key=lambda c: c.drop_order)
        if victim.drop_order == 99:
            break
        cols.remove(victim)
    spare = width - sum(c.width + 1 for c in cols) - 1  # the scrollbar
    for title, most in GROW.items():
        for i, c in enumerate(cols):
            if c.title == title and spare > 0:
                extra = min(spare, most - c.width)
                cols[i] = dataclasses.replace(c, width=c.width + extra)
                spare -= extra
    return tuple(cols)


def header_text(cols: tuple[Column, ...]) -> Text:
    t = Text()
    for c in cols:
        t.append((c.title.rjust(c.width) if c.right else c.title.ljust(c.width)) + " ")
    return t


def row_text(
    r: Request, cols: tuple[Column, ...], task_style: Style, status_style: Style, offset_ns: int
) -> Text:
    t = Text()
    for c in cols:
        value = c.cell(r, offset_ns)
        value = value[: c.width - 1] + "…" if len(value) > c.width else value
        cell = (value.rjust(c.width) if c.right else value.ljust(c.width)) + " "
        if c.title == "task":
            t.append(cell, style=task_style)
        elif c.title == "status":
            t.append(cell, style=status_style)
        else:
            t.append(cell)
    return t
