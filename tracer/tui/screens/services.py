"""Per-service balance: connections per task as bars, live."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.widgets import Static

from tracer.tui.screens.base import TracerScreen
from tracer.tui.widgets.service_bars import ServiceBars


class ServicesScreen(TracerScreen):
    def compose(self) -> ComposeResult:
        yield Static(
            " Services: how the load balancer spread connections over tasks", classes="title"
        )
        with VerticalScroll(id="services-pane"):
            yield ServiceBars(self.state.store, id="services")
        yield from self.compose_footer()

    def redraw(self) -> None:
        self.query_one(ServiceBars).store_changed()
