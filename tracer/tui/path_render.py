"""Draw one request's path like the article's figure: node frames, netns boxes, arrows."""

from __future__ import annotations

from dataclasses import dataclass

from rich.cells import cell_len
from rich.style import Style
from rich.text import Text

from tracer.model import Hop, HopKind, Request, Status
from tracer.sinks.hop_order import causal_hops
from tracer.sinks.narrate import (
    hook_of,
    is_stand_in,
    mark_text,
    outcome,
    service_of_mark,
    task_name,
)

# Mid-luminance colours that read on dark and light backgrounds alike; one per backend task.
TASK_COLORS = (
    "#3d8fd1", "#d9822b", "#2aa876", "#b565d9", "#d14d72", "#1fa3a3", "#9a9a2f", "#6c7bd9",
)  # fmt: skip


@dataclass(frozen=True)
class Palette:
    """Colours taken from the running theme, so the drawing follows dark and light."""

    node: str = "#0178d4"
    border: str = "#7f7f7f"
    title: str = "#ffa62b"
    arrow: str = "#7f7f7f"
    vxlan: str = "#ffa62b"
    error: str = "#ba3c5b"
    success: str = "#4ebf71"
    warning: str = "#ffa62b"
    highlight: str = "#0178d4"

    def task(self, index: int) -> str:
        return TASK_COLORS[index % len(TASK_COLORS)]


@dataclass
class _Box:
    where: str
    node: str
    hops: list[tuple[int, Hop]]


def _segments(hops: list[Hop]) -> list[_Box | tuple[int, Hop]]:
    """Consecutive hops in one netns form a box; a VXLAN hop stands alone between boxes."""
    out: list[_Box | tuple[int, Hop]] = []
    for i, h in enumerate(hops):
        if h.kind is HopKind.REPLY:
            continue
        if h.kind is HopKind.VXLAN:
            out.append((i, h))
            continue
        last = out[-1] if out else None
        if isinstance(last, _Box) and last.where == h.where and last.node == h.node:
            last.hops.append((i, h))
        else:
            out.append(_Box(h.where, h.node, [(i, h)]))
    return out


def duration(ns: int) -> str:
    if ns >= 1_000_000:
        return f"{ns / 1e6:.2f} ms"
    return f"{ns / 1e3:.0f} µs"


def since(ns: int) -> str:
    """Time since the request's first packet; negative for a DNS answer used before it."""
    return f"-{duration(-ns)}" if ns < 0 else f"+{duration(ns)}"


TIMES_LABEL = "times since the first packet"
TIMES_SHORT = "since 1st packet"


def hop_label(h: Hop) -> str:
    """The hop's kind as the drawing labels it (`LB`, `DNAT`, `enter`)."""
    return _LABEL.get(h.kind, str(h.kind))


def hop_text(r: Request, h: Hop) -> str:
    """What happened at the hop, in the drawing's words."""
    k = h.kind
    if k is HopKind.SEND:
        return f"{r.proto} {r.client.src} → {r.client.dst}" + (f"  {h.detail}" if h.detail else "")
    if k in (HopKind.ENTER_NODE, HopKind.ENTER_NETNS):
        return f"in via if#{h.ifindex}" if h.ifindex else "entered"
    if k is HopKind.BRIDGE:
        return f"{h.detail or 'frame forwarded'}" + (f" if#{h.ifindex}" if h.ifindex else "")
    if k is HopKind.DNAT:
        chain = f"  {h.detail}" if h.detail else ""
        return f"{_dst(h.before)} → {_dst(h.after)}{chain}"
    if k is HopKind.MARK:
        return f"fwmark {mark_text(h.mark)}" + (
            f" = service {service_of_mark(h)}" if h.detail else ""
        )
    if k is HopKind.LB:
        how = "IPVS stand-in" if is_stand_in(h) else (h.detail or "IPVS")
        mark = f"fwmark {h.mark} " if h.mark and "fwmark" not in how else ""
        name = f" {task_name(r)}" if r.backend_name else ""
        return f"{mark}→ {_dst(h.after)}{name} ({how})"
    if k is HopKind.SNAT:
        src_b = h.before.saddr if h.before else "?"
        src_a = h.after.saddr if h.after else "?"
        return f"src {src_b} → {src_a}"
    if k is HopKind.DELIVER:
        return f"{r.backend_addr or 'delivered'}" + (f" if#{h.ifindex}" if h.ifindex else "")
    if k is HopKind.DROP:
        return f"DROPPED: {h.detail or 'no reason given'}"
    return h.detail


def _dst(flow: object) -> str:
    return getattr(flow, "dst", "?")


_LABEL = {
    HopKind.SEND: "send",
    HopKind.ENTER_NODE: "enter",
    HopKind.ENTER_NETNS: "enter",
    HopKind.BRIDGE: "bridge",
    HopKind.DNAT: "DNAT",
    HopKind.MARK: "MARK",
    HopKind.LB: "LB",
    HopKind.SNAT: "SNAT",
    HopKind.DELIVER: "deliver",
    HopKind.DROP: "✖ drop",
    HopKind.DNS: "DNS",
}


def _fit(text: Text, width: int) -> Text:
    text = text.copy()
    text.truncate(max(width, 0), overflow="ellipsis", pad=True)
    return text


class PathDrawing:
    """Lines of one request's path at a given width; `hop_lines` maps hop index -> line.

    Hops are indexed in causal order (causal_hops), as talk mode steps through them.
    """

    def __init__(
        self,
        r: Request,
        width: int,
        palette: Palette,
        *,
        task_color: int = 0,
        highlight: int | None = None,
    ) -> None:
        self.r, self.width, self.p = r, max(width, 40), palette
        self.hops = causal_hops(r)
        self.task_style = palette.task(task_color)
        self.highlight = highlight
        self._times_labelled = False
        self.lines: list[Text] = []
        self.hop_lines: dict[int, int] = {}
        self._draw()

    def text(self) -> Text:
        return Text("\n").join(self.lines)

    def _hop_style(self, index: int) -> Style:
        if self.highlight is None:
            return Style()
        if index == self.highlight:
            return Style(bgcolor=self.p.highlight, color="#ffffff", bold=True)
        if index > self.highlight:
            return Style(dim=True)  # not happened yet in talk mode
        return Style()

    def _draw(self) -> None:
        r, p = self.r, self.p
        self.lines.append(self._header())
        segments = _segments(self.hops)
        node = None
        group: list[tuple[Text, int | None]] = []
        for seg in segments:
            if isinstance(seg, tuple):
                i, h = seg
                self._close_node(node, group)
                node, group = None, []
                label = f" ══ VXLAN {h.detail or 'overlay'}  {since(h.ts_ns - r.start_ns)} ══▶"
                line = Text(label, style=Style(color=p.vxlan, bold=True) + self._hop_style(i))
                self._extend([(_fit(line, self.width), i)])
                continue
            if seg.node != node:
                self._close_node(node, group)
                node, group = seg.node, []
            elif group:
                first = seg.hops[0][1]
                arrow = f"      ▼ if#{first.ifindex}" if first.ifindex else "      ▼"
                group.append((Text(arrow, style=p.arrow), None))
            self._box(seg, group)
        self._close_node(node, group)
        self.lines.append(self._reply())

    def _inner_width(self, node: str | None) -> int:
        return self.width - 4 if node else self.width

    def _box(self, box: _Box, out: list[tuple[Text, int | None]]) -> None:
        r, p = self.r, self.p
        w = self._inner_width(box.node)
        dropped = any(h.kind is HopKind.DROP for _, h in box.hops)
        # The last box of a delivered request is the backend's, named or not.
        is_backend = any(h.kind is HopKind.DELIVER for _, h in box.hops)
        color = p.error if dropped else (self.task_style if is_backend else p.border)
        border = Style(color=color, bold=dropped or is_backend)
        title = f" {box.where} "
        # The first box's border heads the time column: each view says what its times count.
        room = w - 6 - cell_len(title)
        legend = next((f" {x} " for x in (TIMES_LABEL, TIMES_SHORT) if len(x) + 2 <= room), "")
        legend = legend if not self._times_labelled else ""
        self._times_labelled = True
        top = Text.assemble(
            ("╭─", border),
            (title, Style(color=p.error if dropped else p.title, bold=True)),
            ("─" * max(w - 4 - cell_len(title) - len(legend), 0), border),
            (legend, Style(dim=True)),
            ("─╮", border),
        )
        out.append((top, None))
        for i, h in box.hops:
            # A narrow screen keeps the hop's words and its time; the hook goes first.
            hook = f"{hook_of(r, h):<17} " if w >= 90 else ""
            right = f"{hook}{since(h.ts_ns - r.start_ns):>10}"
            style = Style(color=p.error, bold=True) if h.kind is HopKind.DROP else Style()
            label = f"{_LABEL.get(h.kind, str(h.kind)):<8}"
            body_w = w - 4 - cell_len(right) - 1
            body = Text.assemble((label, Style(bold=True) + style), (hop_text(r, h), style))
            hop = Text.assemble(_fit(body, body_w), " ", (right, Style(dim=True)))
            hop.stylize(self._hop_style(i))
            line = Text.assemble(("│ ", border), hop, (" │", border))
            out.append((line, i))
        out.append((Text("╰" + "─" * max(w - 2, 0) + "╯", style=border), None))

    def _close_node(self, node: str | None, group: list[tuple[Text, int | None]]) -> None:
        """Flush a node's boxes, framed with the node's name when it has one."""
        if not group or not node:
            self._extend(group)
            return
        frame = Style(color=self.p.node, bold=True)
        title = f" node {node} "
        top = Text("┏━" + title + "━" * max(self.width - 3 - len(title), 0) + "┓", style=frame)
        framed: list[tuple[Text, int | None]] = [(top, None)]
        for line, hop in group:
            inner = _fit(line, self.width - 4)
            framed.append((Text.assemble(("┃ ", frame), inner, (" ┃", frame)), hop))
        framed.append((Text("┗" + "━" * (self.width - 2) + "┛", style=frame), None))
        self._extend(framed)

    def _extend(self, lines: list[tuple[Text, int | None]]) -> None:
        for line, hop in lines:
            if hop is not None:
                self.hop_lines[hop] = len(self.lines)
            self.lines.append(line)

    def _header(self, with_service: bool = True) -> Text:
        r, p = self.r, self.p
        t = Text()
        t.append(f"#{r.id} ", style="bold")
        t.append(f"{r.mode or '?'} ", style=Style(color=p.title, bold=True))
        t.append(f"{r.client.src} → {r.client.dst}")
        if r.service and with_service:
            t.append(f"  service {r.service}", style="bold")
        if r.backend_name or r.backend_addr:
            t.append("  → ")
            task = r.backend_name or r.backend_addr
            t.append(task, style=Style(color=self.task_style, bold=True))
        if with_service and r.service and t.cell_len > self.width:
            # Narrow: the task's name says its service; keep the name whole rather than both.
            return self._header(with_service=False)
        return _fit(t, self.width)

    def _reply(self) -> Text:
        r, p = self.r, self.p
        reply = next((h for h in self.hops if h.kind is HopKind.REPLY), None)
        if reply is None:
            color = p.error if r.status in (Status.DROPPED, Status.REFUSED) else p.warning
            return _fit(Text(f" ■ {outcome(r)}", style=Style(color=color, bold=True)), self.width)
        seen: list[str] = []
        for h in self.hops:
            if h.kind not in (HopKind.REPLY, HopKind.VXLAN) and h.where not in seen:
                seen.append(h.where)
        back = " ◀ ".join(reversed(seen))
        bold = Style(color=p.success, bold=True)
        t = Text.assemble(
            (f" ◀ reply {since(reply.ts_ns - r.start_ns)}  ", bold),
            (back, Style(color=p.success)),
        )
        if any(h.kind in (HopKind.DNAT, HopKind.SNAT, HopKind.LB) for h in self.hops):
            t.append("  (conntrack reverses the NAT)", style=Style(dim=True))
        t.stylize(self._hop_style(self.hops.index(reply)))
        self.hop_lines[self.hops.index(reply)] = len(self.lines)
        return _fit(t, self.width)
