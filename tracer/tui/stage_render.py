"""Presentation layout's drawing: one request's path as boxes for the sandboxes it crossed,
framed by their nodes, with the packet (●) at the hop being told. Made to be read from the
back of a room: few words, wide boxes, one highlight."""

from __future__ import annotations

from dataclasses import dataclass, field

from rich.cells import cell_len
from rich.style import Style
from rich.text import Text

from tracer.model import Hop, HopKind, Request
from tracer.sinks.hop_order import causal_hops
from tracer.tui.path_render import Palette


@dataclass
class _Stop:
    node: str
    where: str
    hops: list[int] = field(default_factory=list)  # indices into causal_hops
    vxlan_before: str = ""  # the overlay crossing that led here

    @property
    def label(self) -> str:
        head, _, rest = self.where.partition(" ")
        return rest if head == self.node and rest else self.where


def stops(hops: list[Hop]) -> list[_Stop]:
    out: list[_Stop] = []
    vxlan = ""
    for i, h in enumerate(hops):
        if h.kind is HopKind.VXLAN:
            vxlan = h.detail.split(",")[-1].strip() if h.detail else "VXLAN"
            continue
        if h.kind is HopKind.REPLY:
            continue
        last = out[-1] if out else None
        if last is not None and last.where == h.where and last.node == h.node:
            last.hops.append(i)
        else:
            out.append(_Stop(h.node, h.where, [i], vxlan))
            vxlan = ""
    return out


class Stage:
    """Lines of the drawing at a width, the packet at causal hop `at`."""

    def __init__(self, r: Request, width: int, palette: Palette, at: int) -> None:
        self.r, self.width, self.p, self.at = r, max(width, 30), palette, at
        self.hops = causal_hops(r)
        self.lines: list[Text] = []
        self._draw()

    def _state(self, stop: _Stop) -> str:
        """"now", "done" or "ahead" for the stop, relative to the hop being told."""
        if self.at in stop.hops:
            return "now"
        return "done" if stop.hops[-1] < self.at else "ahead"

    def _box(self, stop: _Stop) -> list[Text]:
        state = self._state(stop)
        mark = "● " if state == "now" else "  "
        label = f" {mark}{stop.label} "
        w = cell_len(label)
        if state == "now":
            style = Style(color="#ffffff", bgcolor=self.p.highlight, bold=True)
            border = Style(color=self.p.highlight, bold=True)
        elif state == "done":
            style, border = Style(bold=True), Style(color=self.p.border)
        else:
            style, border = Style(dim=True), Style(color=self.p.border, dim=True)
        return [
            Text("╭" + "─" * w + "╮", style=border),
            Text.assemble(("│", border), (label, style), ("│", border)),
            Text("╰" + "─" * w + "╯", style=border),
        ]

    def _group(self, node: str, members: list[_Stop]) -> list[Text]:
        """A node frame around its stops, side by side, joined by arrows: five lines."""
        rows = [Text(), Text(), Text()]
        for j, stop in enumerate(members):
            if j:
                rows[0].append("   ")
                rows[1].append_text(self._arrow(stop))
                rows[2].append("   ")
            for k, line in enumerate(self._box(stop)):
                rows[k].append_text(line)
        inner = max(r.cell_len for r in rows)
        frame = Style(color=self.p.node, bold=True)
        title = f" {node} " if node else " "
        top = Text("┏━" + title + "━" * max(inner - cell_len(title) + 1, 0) + "┓", style=frame)
        out = [top]
        for r in rows:
            pad = " " * (inner - r.cell_len)
            out.append(Text.assemble(("┃ ", frame), r, pad, (" ┃", frame)))
        out.append(Text("┗" + "━" * (inner + 2) + "┛", style=frame))
        return out

    def _arrow(self, after: _Stop) -> Text:
        done = self._state(after) != "ahead"
        return Text("─▶ ", style=Style(color=self.p.arrow, dim=not done))

    def _draw(self) -> None:
        groups: list[tuple[str, list[_Stop], str]] = []  # node, stops, crossing before
        for stop in stops(self.hops):
            if groups and groups[-1][0] == stop.node and not stop.vxlan_before:
                groups[-1][1].append(stop)
            else:
                groups.append((stop.node, [stop], stop.vxlan_before))
        row: list[Text] = [Text() for _ in range(5)]
        for node, members, crossing in groups:
            for chunk in self._fit(node, members):
                block = self._group(node, chunk)
                link = self._link(crossing, row[0].cell_len > 0)
                if row[0].cell_len + link.cell_len + block[0].cell_len > self.width:
                    # The row is full: the path goes on below, a crossing keeps its label.
                    self._flush(row)
                    row = [Text() for _ in range(5)]
                    link = self._link(crossing, False)
                crossing = ""
                for k in range(5):
                    row[k].append_text(link if k == 2 else Text(" " * link.cell_len))
                    row[k].append_text(block[k])
        self._flush(row)
        self.lines.append(self._legend())

    def _fit(self, node: str, members: list[_Stop]) -> list[list[_Stop]]:
        """Split a node's stops so each frame fits the width."""
        chunks: list[list[_Stop]] = [[]]
        for stop in members:
            trial = chunks[-1] + [stop]
            if chunks[-1] and self._group(node, trial)[0].cell_len > self.width - 6:
                chunks.append([stop])
            else:
                chunks[-1] = trial
        return chunks

    def _link(self, crossing: str, after_something: bool) -> Text:
        if crossing:
            return Text(f" ══ {crossing} ══▶ ", style=Style(color=self.p.vxlan, bold=True))
        return Text(" ─▶ " if after_something else "", style=Style(color=self.p.arrow))

    def _flush(self, row: list[Text]) -> None:
        if row[0].cell_len:
            self.lines.extend(row)
            self.lines.append(Text())

    def _legend(self) -> Text:
        r, p = self.r, self.p
        if 0 <= self.at < len(self.hops) and self.hops[self.at].kind is HopKind.REPLY:
            return Text(" ◀ the reply is back at the client",
                        style=Style(color=p.success, bold=True))
        return Text(f" ● the packet of #{r.id}   ▣ node   ─▶ veth or bridge   ══▶ VXLAN",
                    style=Style(dim=True))
