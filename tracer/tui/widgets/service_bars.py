"""Per service: how connections spread over its tasks, as bars, with notes on what skews it."""

from __future__ import annotations

from rich.style import Style
from rich.text import Text
from textual.widget import Widget

from tracer.tui.colors import palette_of
from tracer.tui.path_render import Palette
from tracer.tui.store import LONG_CONNECTION_S, RequestStore, ServiceCount

_EIGHTHS = " ▏▎▍▌▋▊▉"


def bar(fraction: float, width: int) -> str:
    """A horizontal bar in eighths of a cell, padded to width."""
    cells = max(0.0, min(fraction, 1.0)) * width
    full = int(cells)
    part = _EIGHTHS[int((cells - full) * 8)] if full < width else ""
    return ("█" * full + part.strip()).ljust(width)


def service_text(
    name: str, svc: ServiceCount, store: RequestStore, width: int, p: Palette
) -> Text:
    total = svc.connections
    tasks = sorted(svc.tasks.items(), key=lambda kv: kv[0])
    t = Text()
    t.append(f" {name}", style=Style(color=p.title, bold=True))
    t.append(f"   {total} connection{'s' * (total != 1)} over {len(tasks)} task")
    t.append("s" * (len(tasks) != 1) + "\n")
    name_w = min(max((len(k) for k, _ in tasks), default=8), 32)
    bar_w = max(width - name_w - 36, 10)
    for task, count in tasks:
        share = count.connections / total if total else 0.0
        color = Style(color=p.task(store.color_of(task)), bold=True)
        name = task if len(task) <= name_w else task[: name_w - 1] + "…"
        t.append(f"   {name:<{name_w}}  ", style=color)  # always a gap before the bar
        t.append(bar(share, bar_w), style=color)
        t.append(f" {count.connections:>6} {share:>4.0%}")
        mean = count.mean_reply_ms
        t.append(f" {mean:>7.2f} ms" if mean is not None else " " * 10)
        if count.dropped:
            t.append(f"  {count.dropped} dropped", style=Style(color=p.error, bold=True))
        t.append("\n")
    for note in notes(svc):
        t.append("   note: ", style=Style(color=p.warning, bold=True))
        t.append(f"{note}\n", style=Style(color=p.warning))
    return t


def notes(svc: ServiceCount) -> list[str]:
    """Why a spread may look unfair: long-lived connections, everything on one task."""
    out = []
    task, longest = max(
        ((k, c.longest_s) for k, c in svc.tasks.items()), key=lambda kv: kv[1], default=("", 0.0)
    )
    if longest >= LONG_CONNECTION_S:
        out.append(
            f"one connection to {task} stayed open {longest:.1f} s: every request sent on it "
            "went to that task. IPVS balances connections, not requests (HTTP keep-alive)."
        )
    busy = [k for k, c in svc.tasks.items() if c.connections]
    if len(busy) == 1 and svc.connections >= 3:
        out.append(f"all {svc.connections} connections went to {busy[0]}: is it the only task?")
    return out


class ServiceBars(Widget):
    """All services, redrawn when the store moved on."""

    DEFAULT_CSS = "ServiceBars { height: auto; }"

    def __init__(self, store: RequestStore, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.store = store
        self._shape: tuple[tuple[str, int, int], ...] = ()

    def on_mount(self) -> None:
        self.watch(self.app, "theme", self._theme_changed, init=False)

    def _theme_changed(self) -> None:
        self.refresh()

    def store_changed(self) -> None:
        # Its height follows its lines: lay the screen out again only when their number may
        # have changed, not on every batch (a layout costs more than the repaint).
        shape = tuple(
            (name, len(svc.tasks), len(notes(svc))) for name, svc in self.store.services.items()
        )
        self.refresh(layout=shape != self._shape)
        self._shape = shape

    def render(self) -> Text:
        width = self.content_size.width or 80
        if not self.store.services:
            return Text(" No request has reached a backend yet.", style="dim")
        p = palette_of(self.app)
        parts = [
            service_text(name, svc, self.store, width, p)
            for name, svc in sorted(self.store.services.items())
        ]
        return Text("\n").join(parts)
