"""The footer: the active key bindings as one line (one widget, not one per key)."""

from __future__ import annotations

from typing import ClassVar

from rich.style import Style
from rich.text import Text
from textual import events
from textual.binding import Binding
from textual.dom import DOMNode
from textual.screen import Screen
from textual.widget import Widget

PALETTE_KEY = "ctrl+p"


class KeyBar(Widget):
    """Like Textual's Footer (bindings with a description, groups, click to run), but drawn as
    text: the stock Footer rebuilds ~20 widgets on every screen switch, ~50 ms here."""

    COMPONENT_CLASSES: ClassVar[set[str]] = {"key-bar--key", "key-bar--description"}
    DEFAULT_CSS = """
    KeyBar { height: 1; dock: bottom; background: $panel; }
    KeyBar > .key-bar--key { color: $text-accent; text-style: bold; }
    KeyBar > .key-bar--description { color: $foreground; }
    """

    def __init__(self) -> None:
        super().__init__()
        self._targets: list[tuple[int, int, str, DOMNode]] = []  # x range -> action, namespace

    def on_mount(self) -> None:
        self.screen.bindings_updated_signal.subscribe(self, self._bindings_changed)

    def on_unmount(self) -> None:
        self.screen.bindings_updated_signal.unsubscribe(self)

    def _bindings_changed(self, screen: Screen[object]) -> None:
        self.refresh()

    def _entries(self) -> list[tuple[str, str, str, DOMNode, bool]]:
        """(keys, description, action, namespace, enabled) in the order Footer shows them."""
        out: list[tuple[str, str, str, DOMNode, bool]] = []
        groups: dict[Binding.Group, int] = {}
        seen: set[tuple[str, int]] = set()
        for active in self.screen.active_bindings.values():
            b = active.binding
            # "right,l,enter" is one binding under three keys: show it once, by its first key.
            if not b.show or b.key == PALETTE_KEY or (b.action, id(active.node)) in seen:
                continue
            seen.add((b.action, id(active.node)))
            shown = self.app.get_key_display(b)
            if b.group is not None and b.group in groups:
                i = groups[b.group]
                keys, desc, action, node, enabled = out[i]
                sep = "" if b.group.compact else " "
                out[i] = (keys + sep + shown, desc, action, node, enabled)
                continue
            if b.group is not None:
                groups[b.group] = len(out)
            desc = b.group.description if b.group is not None else b.description
            out.append((shown, desc, b.action, active.node, active.enabled))
        return out

    def render(self) -> Text:
        key_style = self.get_component_rich_style("key-bar--key")
        desc_style = self.get_component_rich_style("key-bar--description")
        t = Text(no_wrap=True, overflow="ellipsis")
        self._targets = []
        # Help first: on a narrow screen the line is cut at the end, and `?` explains the rest.
        entries = sorted(self._entries(), key=lambda e: e[2] != "help")
        for keys, desc, action, node, enabled in entries:
            start = len(t)
            t.append(f" {keys} ", style=key_style)
            t.append(f"{desc} ", style=desc_style if enabled else desc_style + Style(dim=True))
            self._targets.append((start, len(t), action, node))
        palette = Text.assemble((" ^p ", key_style), ("palette ", desc_style))
        gap = self.size.width - t.cell_len - palette.cell_len
        if gap > 0:
            t.append(" " * gap)
            self._targets.append((len(t), len(t) + palette.cell_len, "command_palette", self.app))
        t.append_text(palette)
        return t

    async def on_click(self, event: events.Click) -> None:
        for start, end, action, node in self._targets:
            if start <= event.x < end:
                await self.app.run_action(action, node)
                return
