"""Small screens over the others: the key help (`?`, F1) and "go to request N" (`:`)."""

from __future__ import annotations

from typing import ClassVar

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Static

# (keys, what they do); sections in the order a newcomer needs them.
KEYS = {
    "everywhere": (
        ("1 2 3 t", "requests, services, topology, talk mode"),
        ("space", "pause / resume"),
        (":", "go to request #N"),
        ("ctrl+p", "command palette: every action, filters per service and task"),
        ("d", "dark / light theme"),
        ("? F1", "this help"),
        ("q", "quit"),
    ),
    "requests": (
        ("↑ ↓ PgUp PgDn", "move in the list"),
        ("Home End", "first / last request"),
        ("tab", "focus the hop path (then ↑ ↓ scroll it)"),
        ("/", "filter: words search hops too; service: task: client: status: mode: node:"),
        ("Esc", "clear the filter"),
        ("f", "follow the newest request"),
        ("n", "next dropped request"),
    ),
    "talk mode": (
        ("→ Enter / ←", "next / previous hop"),
        ("↓ / ↑", "next / previous request"),
        ("Home End", "first / last request"),
        ("a", "advance by itself, one hop every few seconds (+ - change the pace)"),
        ("p", "presentation layout: the path as a picture, large, narration under it"),
    ),
}
REPLAY_KEYS = (
    ("+ -", "replay faster / slower"),
    ("< >", "10 s back / forward, also after the end"),
    (".", "step: release the next request while paused"),
    ("R", "replay from the start"),
)


def help_table(replay: bool) -> Table:
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold", no_wrap=True)
    table.add_column()
    sections = dict(KEYS)
    if replay:
        sections["replay"] = REPLAY_KEYS
    for title, rows in sections.items():
        table.add_row(Text(title, style="bold underline"), "")
        for keys, what in rows:
            table.add_row(keys, what)
    return table


class HelpScreen(ModalScreen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,q,question_mark,f1", "dismiss", "close", id="help.close"),
    ]
    DEFAULT_CSS = """
    HelpScreen { align: center middle; }
    #help { width: auto; max-width: 96; height: auto; max-height: 100%; border: round $accent;
            background: $surface; padding: 0 1; }
    """

    def __init__(self, *, replay: bool) -> None:
        super().__init__()
        self.replay = replay

    def compose(self) -> ComposeResult:
        box = Static(help_table(self.replay), id="help")
        box.border_title = "keys"
        box.border_subtitle = "Esc closes"
        yield box


class GotoScreen(ModalScreen[int | None]):
    """Asks for a request number; dismisses with it, or None."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "dismiss", "cancel", id="goto.cancel"),
    ]
    DEFAULT_CSS = """
    GotoScreen { align: center middle; }
    #goto-box { width: 40; height: auto; border: round $accent; background: $surface; }
    """

    def compose(self) -> ComposeResult:
        with Vertical(id="goto-box"):
            yield Static(" Go to request # (Enter)")
            yield Input(placeholder="request number", type="integer", id="goto")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        text = event.value.strip().lstrip("#")
        self.dismiss(int(text) if text.isdigit() else None)
