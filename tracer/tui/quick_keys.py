"""A Textual App tuned so the frame a key or click asks for comes at once (textual==8.2.8)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

from rich.console import RenderableType
from textual import events
from textual.app import App
from textual.screen import Screen

from tracer.tui.collector import Collector
from tracer.tui.screens.base import TracerScreen
from tracer.tui.state import TuiState

COLLECT_TICK_S = 0.25  # how often a full collection between keys is considered


class QuickKeysApp(App[None]):
    """Every screen built and styled before the first frame, no hold after a switch, and the
    cyclic GC kept out of a key's way. A subclass says which screens (add_screens) and calls
    build_screens() and collect_between_keys() when it mounts."""

    def __init__(self, state: TuiState) -> None:
        super().__init__()
        self.state = state
        self._mode_names: list[str] = []
        self._screens: dict[str, TracerScreen] = {}  # by mode, once built
        self._collector = Collector()
        self._input_frame_due = False  # a key or click came; its frame is not out yet

    def add_screens(self, modes: Iterable[tuple[str, type[TracerScreen]]]) -> None:
        """One mode per (name, screen class); each screen is made over self.state."""
        for name, cls in modes:
            self._mode_names.append(name)
            self.add_mode(name, self._maker(name, cls))

    def _maker(self, name: str, cls: type[TracerScreen]) -> Callable[[], TracerScreen]:
        def make() -> TracerScreen:
            screen = self._screens[name] = cls(self.state)
            return screen

        return make

    def build_screens(self, start_mode: str) -> None:
        """Build every screen now, then show start_mode's: the first switch to one composed
        and styled it while the user waited (30-50 ms of CPU for talk mode at 100k requests)."""
        for mode in self._mode_names:
            if mode != start_mode:
                self.switch_mode(mode)
        self.switch_mode(start_mode)

    def collect_between_keys(self) -> None:
        """Hand the cyclic GC to the Collector once the first frame is out."""
        self.call_after_refresh(self._start_collector)

    def _start_collector(self) -> None:
        # After the first frame: the screens built are frozen with the rest.
        self._collector.start()
        self.set_interval(COLLECT_TICK_S, lambda: self._collector.tick(self.state.input_at))

    def on_unmount(self) -> None:
        self._collector.stop()

    def delay_update(self, delay: float = 0.05) -> None:
        # Textual holds every frame for 50 ms after switch_mode (and the palette's search),
        # to hide a screen still being built. Ours are all built before the first frame, so
        # the hold only made the frame of a screen key (1-4, t) and the next key wait 50 ms
        # longer (scripts/bench tui: `/` right after `1` took 50 ms, 40 of them idle).
        # (A zero delay is no way out: a 0 s timer froze the frames altogether.)
        return

    def refresh_css(self, animate: bool = True) -> None:
        super().refresh_css(animate)
        # Textual restyles only the current mode's screens; another, switched to later, made
        # the app reparse the whole stylesheet first (the theme is set once the app runs, so
        # the first switch to each screen cost ~10 ms of its key). Restyle them all now, as
        # Textual restyles the current stack's others.
        for screen in self._screens.values():
            if screen._css_update_count != self._css_update_count:
                self.stylesheet.update(screen, animate=animate)
                screen._css_update_count = self._css_update_count

    async def on_event(self, event: events.Event) -> None:
        # Every key and click reaches the app first: note when, so slow work can step aside.
        if isinstance(event, events.Key | events.MouseDown):
            self.state.input_at = time.monotonic()
            self._input_frame_due = True
        await super().on_event(event)

    def _display(self, screen: Screen[Any], renderable: RenderableType | None) -> None:
        super()._display(screen, renderable)
        # The frame a key or click was waiting for is out: the moment furthest from the next
        # one. (call_after_refresh ran before it, when the screen was idle before the key's
        # action had changed anything.) A message, so the frame reaches the terminal first.
        if renderable is not None and self._input_frame_due:
            self._input_frame_due = False
            self.call_later(self._collector.after_input_frame)
