"""The cluster as a picture: one frame per node with its sandboxes and tasks, then the
networks between the nodes and the services balanced over them."""

from __future__ import annotations

from typing import Any

from rich import box
from rich.console import Group, RenderableType
from rich.panel import Panel
from rich.style import Style
from rich.table import Table
from rich.text import Text
from textual.widgets import Static

from tracer.tui.path_render import Palette
from tracer.tui.topology_model import Place, Topology, topology_of

NODE_MIN_WIDTH = 64  # below this per node, nodes are drawn one under the other
_KIND_WORDS = {
    "host": "the node's own netns",
    "ingress_sbox": "routing mesh sandbox",
    "lb": "VIP load balancer",
    "overlay": "overlay netns (VXLAN)",
}


def _place_row(p: Place, palette: Palette, task_color: str) -> tuple[Text, Text]:
    name_style = Style(color=task_color, bold=True) if p.is_task else Style(
        color=palette.title, bold=True
    )
    name = Text(("● " if p.is_task else "▣ ") + p.name, style=name_style)
    what = Text()
    kind = f"task of {p.service}" if p.is_task and p.service else _KIND_WORDS.get(p.kind, "")
    if kind:
        what.append(kind, style=Style(dim=True))
    for ip, network in sorted(p.addrs.items()):
        what.append("  " if what else "")
        what.append(ip)
        if network:
            what.append(f" ({network})", style=Style(dim=True))
    for note in p.notes:
        what.append("\n" if what else "")
        what.append(note, style=Style(color=palette.vxlan))
    return name, what


def node_panel(t: Topology, node: str, palette: Palette, colors: dict[str, int]) -> Panel:
    grid = Table.grid(padding=(0, 1))
    grid.add_column(no_wrap=True)
    grid.add_column()
    for p in t.sorted_places(node):
        color = palette.task(colors.setdefault(p.name, len(colors)))
        grid.add_row(*_place_row(p, palette, color))
    title = f" node {node} " if node else " this machine "
    if t.node_info.get(node):
        title += f"({t.node_info[node]}) "
    return Panel(grid, title=title, title_align="left", box=box.HEAVY,
                 border_style=Style(color=palette.node, bold=True))


def picture(snapshot: dict[str, Any] | None, width: int, palette: Palette) -> RenderableType:
    t = topology_of(snapshot)
    if not t.nodes and not t.services:
        return Text("No topology yet: the source has not sent a snapshot.", style="dim")
    colors: dict[str, int] = {}
    panels = [node_panel(t, node, palette, colors) for node in sorted(t.nodes)]
    per_row = max(1, min(len(panels), width // NODE_MIN_WIDTH))
    rows = Table.grid(expand=True, padding=(0, 1))
    for _ in range(per_row):
        rows.add_column(ratio=1)
    for i in range(0, len(panels), per_row):
        chunk = panels[i : i + per_row]
        rows.add_row(*chunk, *[""] * (per_row - len(chunk)))
    parts: list[RenderableType] = [rows]
    if t.networks:
        nets = Text(" networks: ", style=Style(bold=True))
        nets.append("  │  ".join(f"{name} ({what})" for name, what in sorted(t.networks.items())),
                    style=Style(color=palette.vxlan))
        parts.append(nets)
    if t.services:
        table = Table(box=box.SIMPLE_HEAD, expand=True, show_edge=False, pad_edge=False)
        for col in ("service", "VIP", "published / fwmark", "tasks"):
            table.add_column(col, style=Style(bold=True) if col == "service" else None)
        for s in sorted(t.services.values(), key=lambda s: s.name):
            vips = ", ".join(f"{ip} ({net})" for net, ip in sorted(s.vips.items()))
            vips = vips or ("DNS round robin" if s.mode == "dnsrr" else "-")
            table.add_row(s.name, vips, ", ".join(s.ports) or "-", ", ".join(s.tasks) or "-")
        parts.append(table)
    return Group(*parts)


class TopologyPicture(Static, can_focus=True):
    """Redrawn from a snapshot at the widget's width; scrolls inside its screen."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.snapshot: dict[str, Any] | None = None

    def on_mount(self) -> None:
        self.watch(self.app, "theme", self._draw, init=False)

    def load(self, snapshot: dict[str, Any] | None) -> None:
        self.snapshot = snapshot
        self._draw()

    def on_resize(self) -> None:
        self._draw()

    def _draw(self) -> None:
        from tracer.tui.colors import palette_of

        width = self.content_size.width or self.app.size.width
        self.update(picture(self.snapshot, width, palette_of(self.app)))
