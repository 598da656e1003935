"""The enrichment snapshot: nodes, sandboxes, networks, VIPs, fwmarks, ports, IPVS tables."""

from __future__ import annotations

from typing import Any

from textual.app import ComposeResult
from textual.widgets import Static

from tracer.tui.screens.base import TracerScreen
from tracer.tui.state import TuiState
from tracer.tui.widgets.topology_tree import TopologyTree


class TopologyScreen(TracerScreen):
    def __init__(self, state: TuiState) -> None:
        super().__init__(state)
        self._shown: dict[str, Any] | None = None
        self._loaded = False

    def compose(self) -> ComposeResult:
        yield Static(" Topology: what the tracer knows about this cluster", classes="title")
        yield TopologyTree(id="topology")
        yield from self.compose_footer()

    def on_mount(self) -> None:
        self.query_one(TopologyTree).focus()

    def redraw(self) -> None:
        # Rebuild only when a new snapshot arrived: rebuilding collapses what the user opened.
        if not self._loaded or self.state.topology is not self._shown:
            self._shown, self._loaded = self.state.topology, True
            self.query_one(TopologyTree).load(self._shown)
