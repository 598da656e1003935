"""The swarmtrace TUI: a sink that shows Requests from a RequestFeed."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from textual.app import App
from textual.binding import Binding, BindingType

from tracer.tui.command_palette import TracerCommands
from tracer.tui.feed import ReplayControls, RequestFeed
from tracer.tui.feed_pump import FeedPump, FeedUpdate
from tracer.tui.playback import Playback
from tracer.tui.quick_keys import QuickKeysApp
from tracer.tui.screens.base import TracerScreen
from tracer.tui.screens.requests import RequestsScreen
from tracer.tui.screens.services import ServicesScreen
from tracer.tui.screens.talk import TalkScreen
from tracer.tui.screens.topology import TopologyScreen
from tracer.tui.state import TuiState

DARK, LIGHT = "textual-dark", "textual-light"
SPEED = Binding.Group("speed", compact=True)
SEEK = Binding.Group("seek", compact=True)
VIEWS = Binding.Group("views", compact=True)
MODES: tuple[tuple[str, type[TracerScreen]], ...] = (
    ("requests", RequestsScreen),
    ("services", ServicesScreen),
    ("topology", TopologyScreen),
    ("talk", TalkScreen),
)


class SwarmtraceApp(QuickKeysApp):
    """The screens, the keys that move between them, and the feed that fills them."""

    CSS_PATH = Path(__file__).with_name("app.tcss")  # absolute: subclasses live elsewhere
    COMMANDS = App.COMMANDS | {TracerCommands}
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("1", "show('requests')", "requests", id="screen.requests", group=VIEWS),
        Binding("2", "show('services')", "services", id="screen.services", group=VIEWS),
        Binding("3", "show('topology')", "topology", id="screen.topology", group=VIEWS),
        Binding("t", "show('talk')", "talk", id="screen.talk", group=VIEWS),
        Binding("space", "toggle_pause", "pause", id="pause"),
        Binding("plus", "speed(1)", "faster", id="replay.faster", group=SPEED),
        Binding("minus", "speed(-1)", "slower", id="replay.slower", group=SPEED),
        Binding("greater_than_sign", "seek(10)", "+10s", id="replay.forward", group=SEEK),
        Binding("less_than_sign", "seek(-10)", "-10s", id="replay.back", group=SEEK),
        Binding("full_stop", "step", "step", id="replay.step"),
        Binding("R", "restart", "from start", id="replay.restart", show=False),
        Binding("colon", "goto", "go to #", id="goto", show=False),
        Binding("question_mark,f1", "help", "help", key_display="?", id="help"),
        Binding("d", "toggle_theme", "dark/light", id="theme", show=False),
        Binding("q", "quit", "quit", id="quit"),
    ]

    def __init__(
        self,
        feed: RequestFeed,
        *,
        step: bool = False,
        title: str = "swarmtrace",
        capacity: int = 200_000,
        query: str = "",
        present: bool = False,
    ) -> None:
        super().__init__(TuiState())
        self.title = title
        self.theme = DARK
        self.state.store.capacity = capacity
        self.controls = feed if isinstance(feed, ReplayControls) else None
        self._pump = FeedPump(self, feed, self.state, capacity)
        self._playback = Playback(self.state, self.controls, self._pump, self.refresh_screen)
        self._start_mode = "talk" if step or present else "requests"
        self._present = present
        self._start_query = query
        self.add_screens(MODES)

    def on_mount(self) -> None:
        if self._start_query:
            self.state.store.set_query(self._start_query)
        self.build_screens(self._start_mode)
        if self._present:
            talk = self._screens["talk"]
            assert isinstance(talk, TalkScreen)
            talk.action_present()
        self._pump.start()
        self.collect_between_keys()

    # -- the feed ----------------------------------------------------------------------------

    def on_feed_update(self, msg: FeedUpdate) -> None:
        self._pump.apply(msg)
        self.refresh_screen()

    def refresh_screen(self) -> None:
        if not self._screen_stacks.get(self._current_mode):
            return  # quitting: the screens are closed, a last batch may still come
        screen = self.screen
        if isinstance(screen, TracerScreen):
            with self.batch_update():
                screen.state_changed()

    # -- actions -----------------------------------------------------------------------------

    def action_show(self, mode: str) -> None:
        start: int | None = None
        requests = self._screens.get("requests")
        if mode == "talk" and self.current_mode == "requests":
            assert isinstance(requests, RequestsScreen)
            start = requests.request_list.cursor
        self.switch_mode(mode)
        talk = self._screens.get("talk")
        if start is not None and isinstance(talk, TalkScreen):
            talk.start_at(start)

    def action_toggle_pause(self) -> None:
        self._playback.toggle_pause()

    def action_toggle_theme(self) -> None:
        self.theme = LIGHT if self.theme == DARK else DARK

    def action_speed(self, direction: int) -> None:
        self._playback.speed(direction)

    def action_seek(self, seconds: float) -> None:
        self._playback.seek(seconds)

    def action_restart(self) -> None:
        self._playback.restart()

    def action_step(self) -> None:
        self._playback.step()

    def action_help(self) -> None:
        from tracer.tui.screens.dialogs import HelpScreen

        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen(replay=self.controls is not None))

    def action_goto(self) -> None:
        from tracer.tui.screens.dialogs import GotoScreen

        self.push_screen(GotoScreen(), self.go_to_request)

    def go_to_request(self, request_id: int | None) -> None:
        """Select request #id in the list, or in talk mode start talking about it."""
        if request_id is None:
            return
        index = self.state.store.index_of(request_id)
        if index is None:
            self.notify(f"No request #{request_id} in the list.", timeout=3)
            return
        screen = self.screen
        if isinstance(screen, TalkScreen):
            screen.start_at(index)
        else:
            self.switch_mode("requests")
            self.call_after_refresh(lambda: self._requests_screen().select(index))

    def _requests_screen(self) -> RequestsScreen:
        screen = self._screens["requests"]
        assert isinstance(screen, RequestsScreen)
        return screen

    # Palette commands act on the requests screen; run them once it is current and mounted.

    def apply_filter(self, text: str) -> None:
        self.switch_mode("requests")
        self.call_after_refresh(lambda: self._requests_screen().set_filter(text))

    def set_follow(self, follow: bool) -> None:
        self.switch_mode("requests")
        if self.state.follow != follow:
            self.call_after_refresh(lambda: self._requests_screen().action_follow())

    def jump_to_drop(self) -> None:
        self.switch_mode("requests")
        self.call_after_refresh(lambda: self._requests_screen().action_next_drop())

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        # Replay keys only exist when the feed can be paced.
        if action in ("speed", "seek", "step", "restart"):
            return self.controls is not None
        return True

