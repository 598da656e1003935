"""The footer: the active key bindings as one line (one widget, not one per key)."""

from __future__ import annotations

from typing import ClassVar

from rich.cells import cell_len
from rich.style import Style
from rich.text import Text
from textual import events
from textual.binding import Binding
from textual.dom import DOMNode
from textual.screen import Screen
from textual.widget import Widget

PALETTE_KEY = "ctrl+p"
PALETTE_DISPLAY = "^p"
KEEP = frozenset({"help", "quit"})  # never dropped to fit the width
# (keys, description, action, namespace, enabled)
Entry = tuple[str, str, str, DOMNode, bool]


def _width(keys: str, desc: str) -> int:
    """Cells an entry takes: ` keys desc `."""
    return cell_len(keys) + cell_len(desc) + 3


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

    def _entries(self) -> list[Entry]:
        """The shown bindings in the order Footer shows them."""
        out: list[Entry] = []
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
        entries = self._fitting(self._entries(), self.size.width)
        t = Text(no_wrap=True, overflow="ellipsis")
        self._targets = []
        for keys, desc, action, node, enabled in entries:
            if action == "command_palette":
                # Right-aligned, apart from the keys of this screen.
                t.append(" " * (self.size.width - t.cell_len - _width(keys, desc)))
            start = len(t)
            t.append(f" {keys} ", style=key_style)
            t.append(f"{desc} ", style=desc_style if enabled else desc_style + Style(dim=True))
            self._targets.append((start, len(t), action, node))
        return t

    def _fitting(self, entries: list[Entry], width: int) -> list[Entry]:
        """Help first, the palette last, and as many keys between as the width holds.

        Cut at the width, an 80-column line lost everything after the replay keys, quit
        included. So keys are dropped instead: the palette hint first, then the app's own keys
        from the last shown (replay step, seek, speed, pause, views), then this screen's from
        its last. Help and quit always stay: `?` lists every key.
        """
        entries = sorted(entries, key=lambda e: e[2] != "help")
        entries.append((PALETTE_DISPLAY, "palette", "command_palette", self.app, True))
        kept = list(entries)
        drop_order = [kept[-1]]  # the palette hint: also in help and in the palette itself
        for mine in (False, True):  # the app's keys first, then this screen's
            drop_order += [
                e for e in reversed(entries[:-1])
                if e[2] not in KEEP and (e[3] is not self.app) is mine
            ]
        for entry in drop_order:
            if sum(_width(e[0], e[1]) for e in kept) <= width:
                break
            kept.remove(entry)
        return kept

    async def on_click(self, event: events.Click) -> None:
        for start, end, action, node in self._targets:
            if start <= event.x < end:
                await self.app.run_action(action, node)
                return
