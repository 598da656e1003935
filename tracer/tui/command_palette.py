"""Command palette entries (ctrl+p): screens, pause, follow, drops, filters by service/task."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING

from textual.command import DiscoveryHit, Hit, Hits, Provider

if TYPE_CHECKING:
    from tracer.tui.app import SwarmtraceApp


class TracerCommands(Provider):
    def _commands(self) -> list[tuple[str, str, Callable[[], object]]]:
        app: SwarmtraceApp = self.app  # type: ignore[assignment]
        run = app.run_action
        out: list[tuple[str, str, Callable[[], object]]] = [
            ("Show requests", "The live list and the selected request's path", partial(run, "show('requests')")),
            ("Show services", "How each service spreads connections over its tasks", partial(run, "show('services')")),
            ("Show topology", "Nodes, sandboxes, networks, VIPs, fwmarks, IPVS", partial(run, "show('topology')")),
            ("Talk mode", "One request at a time, one hop per key", partial(run, "show('talk')")),
            ("Pause / resume", "Freeze the display; nothing is lost", partial(run, "toggle_pause")),
            ("Toggle dark / light theme", "", partial(run, "toggle_theme")),
            ("Follow newest", "Keep the newest request selected", partial(app.set_follow, True)),
            ("Jump to next drop", "Select the next dropped request", partial(app.jump_to_drop)),
            ("Clear filter", "Show every request", partial(app.apply_filter, "")),
        ]
        store = app.state.store
        for service in sorted(store.services):
            out.append((f"Filter service {service}", "Only this service's requests",
                        partial(app.apply_filter, f"service:{service}")))
            for task in sorted(store.services[service].tasks):
                out.append((f"Filter task {task}", f"Only requests {service} sent to {task}",
                            partial(app.apply_filter, f"task:{task}")))
        out.append(("Filter dropped requests", "status:dropped", partial(app.apply_filter, "status:dropped")))
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
