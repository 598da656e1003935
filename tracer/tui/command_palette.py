"""Command palette entries (ctrl+p): screens, pause, follow, drops, filters by service/task."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Protocol, cast

from textual.command import DiscoveryHit, Hit, Hits, Provider
from textual.content import Content
from textual.fuzzy import Matcher

from tracer.tui.feed import ReplayControls
from tracer.tui.state import TuiState

Command = tuple[str, str, Callable[[], object]]  # name, help, what it does


class PaletteHost(Protocol):
    """What the palette needs of the app: typed here so this module never imports the app."""

    state: TuiState
    controls: ReplayControls | None

    def run_action(self, action: str) -> object: ...

    def set_follow(self, follow: bool) -> None: ...

    def jump_to_drop(self) -> None: ...

    def apply_filter(self, text: str) -> None: ...


# (name, help, app action); the key that does the same is in the name, to be learnt.
ACTIONS = (
    ("Show requests  [1]", "The live list and the selected request's path", "show('requests')"),
    ("Show services  [2]", "How each service spreads connections over its tasks",
     "show('services')"),
    ("Show topology  [3]", "Nodes, sandboxes, networks and tasks as a picture", "show('topology')"),
    ("Talk mode  [t]", "One request at a time, one hop per key", "show('talk')"),
    ("Pause / resume  [space]", "Freeze the display; nothing is lost", "toggle_pause"),
    ("Go to request #N  [:]", "Select a request by its number", "goto"),
    ("Help: every key  [?]", "What each key does, per screen", "help"),
    ("Toggle dark / light theme  [d]", "", "toggle_theme"),
)
# Only for a replay (a feed that can be paced).
REPLAY_ACTIONS = (
    ("Speed up the replay  [+]", "Replay speed: the next step up (up to 64x)", "speed(1)"),
    ("Slow the replay down  [-]", "Replay speed: the next step down (down to 1/8x)", "speed(-1)"),
    ("Seek 10 s forward  [>]", "Move the replay clock forward", "seek(10)"),
    ("Seek 10 s back  [<]", "Move the replay clock back, also after the end", "seek(-10)"),
    ("Step one request  [.]", "Pause and release the next request", "step"),
    ("Replay from the start  [R]", "Empty the list and replay the trace again", "restart"),
)


class TracerCommands(Provider):
    def _commands(self) -> list[Command]:
        app = cast(PaletteHost, self.app)
        actions = ACTIONS + (REPLAY_ACTIONS if app.controls is not None else ())
        out: list[Command] = [
            (name, help_text, partial(app.run_action, action))
            for name, help_text, action in actions
        ]
        out += [
            ("Follow newest  [f]", "Keep the newest request selected",
             partial(app.set_follow, True)),
            ("Jump to next drop  [n]", "Select the next dropped request", app.jump_to_drop),
            ("Clear filter  [Esc]", "Show every request", partial(app.apply_filter, "")),
            ("Filter dropped requests", "status:dropped",
             partial(app.apply_filter, "status:dropped")),
        ]
        services = app.state.store.services
        for service in sorted(services):
            out.append((f"Filter service {service}", "Only this service's requests",
                        partial(app.apply_filter, f"service:{service}")))
            for task in sorted(services[service].tasks):
                out.append((f"Filter task {task}", f"Only requests of {service} sent to {task}",
                            partial(app.apply_filter, f"task:{task}")))
        return out

    async def discover(self) -> Hits:
        for name, help_text, callback in self._commands():
            yield DiscoveryHit(Content(name), callback, text=name, help=help_text)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for name, help_text, callback in self._commands():
            # A word of the help counts too ("speed" finds "Slow the replay down"); fuzzy
            # matching over whole sentences would find almost anything.
            score = matcher.match(name) or (0.5 if query.lower() in help_text.lower() else 0)
            if score > 0:
                yield Hit(score, highlight(matcher, name), callback, text=name, help=help_text)


def highlight(matcher: Matcher, name: str) -> Content:
    """The name with the matched letters marked, as plain text: Textual's own highlight reads
    it as markup, and a key like `[R]` or `[d]` is a style there (reverse, dim), not text."""
    content = Content(name)
    score, offsets = matcher.fuzzy_search.match(matcher.query, name)
    for offset in offsets if score else ():
        if not name[offset].isspace():
            content = content.stylize(matcher.match_style, offset, offset + 1)
    return content
