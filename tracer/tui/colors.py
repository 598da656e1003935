"""Drawing colours from the running Textual theme, so dark and light both read well."""

from __future__ import annotations

import functools

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
    Status.DNS_FAILED: "error",
    Status.DNS_SEARCH: "warning",
    Status.DNS_FORWARDED: "warning",
}


_KEYS = ("foreground", "background", "text-primary", "text-accent", "text-error",
         "text-success", "text-warning", "primary")  # fmt: skip


def palette_of(app: App[object]) -> Palette:
    """The palette of the app's current theme (computed once per theme)."""
    v = app.theme_variables
    return _palette(tuple(v.get(k, "") for k in _KEYS))


@functools.lru_cache(maxsize=16)
def _palette(values: tuple[str, ...]) -> Palette:
    v = dict(zip(_KEYS, values, strict=True))

    def color(name: str, fallback: str) -> str:
        # Theme variables may carry alpha (#rrggbbaa), which Rich cannot parse: flatten it.
        return Color.parse(v[name] or fallback).hex6

    fg = Color.parse(v["foreground"] or "#e0e0e0")
    bg = Color.parse(v["background"] or "#121212")
    return Palette(
        node=color("text-primary", "#57a5e2"),
        border=fg.blend(bg, 0.45).hex6,
        title=color("text-accent", "#ffc473"),
        arrow=fg.blend(bg, 0.35).hex6,
        vxlan=color("text-accent", "#ffc473"),
        error=color("text-error", "#d17e92"),
        success=color("text-success", "#8ad4a1"),
        warning=color("text-warning", "#ffc473"),
        highlight=color("primary", "#0178d4"),
    )


def status_style(palette: Palette, status: Status) -> Style:
    color = getattr(palette, _STATUS[status])
    return Style(color=color, bold=status is not Status.OK)
