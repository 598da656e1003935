"""What the pause and replay keys do: pause any feed; pace, seek, step or restart a replay."""

from __future__ import annotations

from collections.abc import Callable

from tracer.tui.feed import ReplayControls
from tracer.tui.feed_pump import FeedPump
from tracer.tui.state import TuiState

SPEEDS = (0.125, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 64.0)


class Playback:
    """The state's pause and speed kept in step with the feed; refresh() redraws after each
    change. With controls None (a live feed) only pause does anything."""

    def __init__(
        self,
        state: TuiState,
        controls: ReplayControls | None,
        pump: FeedPump,
        refresh: Callable[[], None],
    ) -> None:
        self._controls = controls
        self._state, self._pump, self._refresh = state, pump, refresh
        state.speed = controls.speed if controls else None

    def toggle_pause(self) -> None:
        st = self._state
        st.paused = not st.paused
        if self._controls is not None:
            self._controls.set_paused(st.paused)
        elif not st.paused:
            self._pump.release_held()
        self._refresh()

    def speed(self, direction: int) -> None:
        """The next speed in SPEEDS up (direction > 0) or down (< 0)."""
        if self._controls is None:
            return
        now = self._controls.speed
        faster = [s for s in SPEEDS if s > now]
        slower = [s for s in SPEEDS if s < now]
        if direction > 0 and faster:
            self._controls.set_speed(faster[0])
        elif direction < 0 and slower:
            self._controls.set_speed(slower[-1])
        self._state.speed = self._controls.speed
        self._refresh()

    def seek(self, seconds: float) -> None:
        if self._controls is None:
            return
        if seconds < 0:
            # Rewind: the list shows what it showed then, and what came later comes again.
            self._state.store.clear()
        self._controls.seek(seconds)
        self._pump.again()
        self._refresh()

    def restart(self) -> None:
        """Replay from the start: the list empties and fills again at the trace's pace."""
        if self._controls is None:
            return
        self._state.store.clear()
        self._controls.restart()
        self._pump.again()
        self._refresh()

    def step(self) -> None:
        """Pause, and release the next request."""
        if self._controls is None:
            return
        if not self._state.paused:
            self.toggle_pause()
        self._controls.step()
