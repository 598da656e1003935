"""Drawing colours from the running Textual theme, so dark and light both read well."""

from __future__ import annotations

from rich.style import Style
from textual.app import App
from textual.color import Color

from tracer.model import Status
from tracer.tui.path_render import Palette

_STATUS = {
    Status.OK: "success",
    Status.OPEN: "warning",
    Status.NO_REPLY: "warning",
    Status.REFUSED: "error",
    Status.DROPPED: "error",
    Status.UNROUTED: "error",
}


def _hex(variables: dict[str, str], name: str, fallback: str) -> str:
    # Theme variables may carry alpha (#rrggbbaa), which Rich cannot parse: flatten it.
    return Color.parse(variables.get(name, fallback)).hex6


def palette_of(app: App[object]) -> Palette:
    v = app.theme_variables
    fg = Color.parse(v.get("foreground", "#e0e0e0"))
    bg = Color.parse(v.get("background", "#121212"))
    return Palette(
        node=_hex(v, "text-primary", "#57a5e2"),
        border=fg.blend(bg, 0.45).hex6,
        title=_hex(v, "text-accent", "#ffc473"),
        arrow=fg.blend(bg, 0.35).hex6,
        vxlan=_hex(v, "text-accent", "#ffc473"),
        error=_hex(v, "text-error", "#d17e92"),
        success=_hex(v, "text-success", "#8ad4a1"),
        warning=_hex(v, "text-warning", "#ffc473"),
        highlight=_hex(v, "primary", "#0178d4"),
    )


def status_style(palette: Palette, status: Status) -> Style:
    color = getattr(palette, _STATUS[status])
    return Style(color=color, bold=status is not Status.OK)
