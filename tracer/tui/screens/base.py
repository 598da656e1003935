"""What all swarmtrace screens share: the state, a status bar and the footer."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.css.query import NoMatches
from textual.screen import UPDATE_PERIOD, Screen
from textual.timer import Timer

from tracer.tui.frame_pacer import FramePacer
from tracer.tui.state import TuiState
from tracer.tui.widgets.key_bar import KeyBar
from tracer.tui.widgets.status_bar import StatusBar, StatusState


class TracerScreen(Screen[None]):
    """A screen over the shared TuiState; the app calls state_changed() after each batch."""

    def __init__(self, state: TuiState) -> None:
        super().__init__()
        self.state = state
        self._pacer: FramePacer | None = None

    @property
    def _update_timer(self) -> Timer:
        # Textual's own repaint timer, made as Screen makes it but a FramePacer (pinned
        # textual==8.2.8): a key's frame comes at once, not one or two frames later.
        if self._pacer is None:
            self._pacer = FramePacer(
                self, UPDATE_PERIOD, self._on_timer_update, lambda: self.state.input_at
            )
            self._pacer._start()
            self._timers.add(self._pacer)  # stopped with the screen
        return self._pacer

    def compose_footer(self) -> ComposeResult:
        yield StatusBar(id="status")
        yield KeyBar()

    def state_changed(self) -> None:
        """Redraw from self.state (the app calls this after each batch)."""
        if not self.is_mounted:
            return  # on_mount draws the first time
        try:
            self.update_status()
            self.redraw()
        except NoMatches:
            pass  # the app is closing and took the widgets away: nothing to draw

    def redraw(self) -> None:
        """Draw this screen's own part of the state."""

    def update_status(self) -> None:
        st, store = self.state, self.state.store
        self.query_one(StatusBar).update_state(
            StatusState(
                stats=st.stats,
                requests=store.total,
                shown=len(store),
                query=store.query_text,
                paused=st.paused,
                follow=st.follow,
                finished=st.finished,
                speed=st.speed,
            )
        )

    def on_screen_resume(self) -> None:
        self.state_changed()

    def on_mount(self) -> None:
        # Textual runs this and the subclass's on_mount: draw once the children exist.
        self.call_after_refresh(self.state_changed)
