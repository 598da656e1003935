"""Command palette entries (ctrl+p): screens, pause, follow, drops, filters by service/task."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Protocol, cast

from textual.command import DiscoveryHit, Hit, Hits, Provider

from tracer.tui.state import TuiState

Command = tuple[str, str, Callable[[], object]]  # name, help, what it does


class PaletteHost(Protocol):
    """What the palette needs of the app: typed here so this module never imports the app."""

    state: TuiState

    def run_action(self, action: str) -> object: ...

    def set_follow(self, follow: bool) -> None: ...

    def jump_to_drop(self) -> None: ...

    def apply_filter(self, text: str) -> None: ...

# (name, help, app action)
ACTIONS = (
    ("Show requests", "The live list and the selected request's path", "show('requests')"),
    ("Show services", "How each service spreads connections over its tasks", "show('services')"),
    ("Show topology", "Nodes, sandboxes, networks, VIPs, fwmarks, IPVS", "show('topology')"),
    ("Talk mode", "One request at a time, one hop per key", "show('talk')"),
    ("Pause / resume", "Freeze the display; nothing is lost", "toggle_pause"),
    ("Toggle dark / light theme", "", "toggle_theme"),
)


class TracerCommands(Provider):
    def _commands(self) -> list[Command]:
        app = cast(PaletteHost, self.app)
        out: list[Command] = [
            (name, help_text, partial(app.run_action, action))
            for name, help_text, action in ACTIONS
        ]
        out += [
            ("Follow newest", "Keep the newest request selected", partial(app.set_follow, True)),
            ("Jump to next drop", "Select the next dropped request", app.jump_to_drop),
            ("Clear filter", "Show every request", partial(app.apply_filter, "")),
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
            yield DiscoveryHit(name, callback, help=help_text)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for name, help_text, callback in self._commands():
            score = matcher.match(name)
            if score > 0:
                yield Hit(score, matcher.highlight(name), callback, help=help_text)
