"""The cluster as a picture: nodes, sandboxes, networks and tasks, from the enrichment snapshot."""

from __future__ import annotations

from typing import Any

from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.widgets import Static

from tracer.tui.screens.base import TracerScreen
from tracer.tui.state import TuiState
from tracer.tui.widgets.topology_picture import TopologyPicture


class TopologyScreen(TracerScreen):
    def __init__(self, state: TuiState) -> None:
        super().__init__(state)
        self._shown: dict[str, Any] | None = None
        self._loaded = False

    def compose(self) -> ComposeResult:
        title = " Topology: nodes, their sandboxes and tasks, the networks between them"
        yield Static(title, classes="title")
        with VerticalScroll(id="topology"):
            yield TopologyPicture(id="topology-picture")
        yield from self.compose_footer()

    def on_mount(self) -> None:
        self.query_one("#topology", VerticalScroll).focus()

    def redraw(self) -> None:
        if not self._loaded or self.state.topology is not self._shown:
            self._shown, self._loaded = self.state.topology, True
            self.query_one(TopologyPicture).load(self._shown)
