"""The swarmtrace TUI: a sink that shows Requests from a RequestFeed."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

from rich.console import RenderableType
from textual import events, work
from textual.app import App
from textual.binding import Binding, BindingType
from textual.message import Message
from textual.screen import Screen
from textual.worker import get_current_worker

from tracer.model import Request
from tracer.tui.collector import Collector
from tracer.tui.command_palette import TracerCommands
from tracer.tui.feed import FeedStats, ReplayControls, RequestFeed
from tracer.tui.screens.base import TracerScreen
from tracer.tui.screens.requests import RequestsScreen
from tracer.tui.screens.services import ServicesScreen
from tracer.tui.screens.talk import TalkScreen
from tracer.tui.screens.topology import TopologyScreen
from tracer.tui.state import TuiState
from tracer.tui.untrack import untrack

BATCH_S = 0.1  # one message to the UI per this long, however many events arrived
COLLECT_TICK_S = 0.25  # how often a full collection between keys is considered
DARK, LIGHT = "textual-dark", "textual-light"
SPEEDS = (0.125, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 64.0)
SPEED = Binding.Group("speed", compact=True)
SEEK = Binding.Group("seek", compact=True)
VIEWS = Binding.Group("views", compact=True)


class FeedUpdate(Message):
    """What the feed worker gathered in one BATCH_S."""

    def __init__(
        self,
        requests: list[Request],
        stats: FeedStats | None,
        topology: dict[str, Any] | None,
        finished: bool,
    ) -> None:
        super().__init__()
        self.requests, self.stats, self.finished = requests, stats, finished
        self.topology = topology


class SwarmtraceApp(App[None]):
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
        super().__init__()
        self.feed = feed
        self.title = title
        self.theme = DARK
        self.state = TuiState()
        self.state.store.capacity = capacity
        self.controls = feed if isinstance(feed, ReplayControls) else None
        self.state.speed = self.controls.speed if self.controls else None
        self._pending: deque[Request] = deque(maxlen=capacity)  # held back while paused
        self._start_mode = "talk" if step or present else "requests"
        self._present = present
        self._start_query = query
        self._screens: dict[str, TracerScreen] = {}
        self._collector = Collector()
        self._input_frame_due = False  # a key or click came; its frame is not out yet
        modes: tuple[tuple[str, type[TracerScreen]], ...] = (
            ("requests", RequestsScreen),
            ("services", ServicesScreen),
            ("topology", TopologyScreen),
            ("talk", TalkScreen),
        )
        self._screen_modes = tuple(name for name, _ in modes)
        for name, cls in modes:
            self.add_mode(name, self._maker(name, cls))

    def _maker(self, name: str, cls: type[TracerScreen]) -> Callable[[], TracerScreen]:
        def make() -> TracerScreen:
            screen = self._screens[name] = cls(self.state)
            return screen

        return make

    def on_mount(self) -> None:
        if self._start_query:
            self.state.store.set_query(self._start_query)
        # Build every screen now, before the first frame: the first switch to one composed
        # and styled it while the user waited (30-50 ms of CPU for talk mode at 100k requests).
        for mode in self._screen_modes:
            if mode != self._start_mode:
                self.switch_mode(mode)
        self.switch_mode(self._start_mode)
        if self._present:
            talk = self._screens["talk"]
            assert isinstance(talk, TalkScreen)
            talk.action_present()
        self._pump()
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
        # Textual restyles the current stack's others (pinned textual==8.2.8).
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

    # -- the feed ----------------------------------------------------------------------------

    @work(thread=True, exclusive=True, group="feed")
    def _pump(self) -> None:
        """Poll the feed in a thread; post one FeedUpdate per BATCH_S (never one per event)."""
        worker = get_current_worker()
        while not worker.is_cancelled:
            deadline = time.monotonic() + BATCH_S
            requests: dict[int, Request] = {}
            stats: FeedStats | None = None
            topology: dict[str, Any] | None = None
            finished = False
            while not worker.is_cancelled:
                batch = self.feed.poll(max(0.0, deadline - time.monotonic()))
                for r in batch.requests:
                    untrack(r)  # here, off the UI thread: ~2 µs a request
                    requests[r.id] = r
                stats = batch.stats
                topology = batch.topology if batch.topology is not None else topology
                finished = self.feed.finished
                if finished or time.monotonic() >= deadline:
                    break
            self.post_message(FeedUpdate(list(requests.values()), stats, topology, finished))
            if finished:
                return

    def on_feed_update(self, msg: FeedUpdate) -> None:
        st = self.state
        if msg.stats is not None:
            st.stats = msg.stats
        if msg.topology is not None:
            st.topology = msg.topology
        st.finished = msg.finished
        if st.paused and self.controls is None:
            # A live source cannot stop: keep what arrives and show it on resume.
            self._pending.extend(msg.requests)
        elif msg.requests:
            st.store.apply(msg.requests)
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
        st = self.state
        st.paused = not st.paused
        if self.controls is not None:
            self.controls.set_paused(st.paused)
        elif not st.paused and self._pending:
            st.store.apply(self._pending)
            self._pending.clear()
        self.refresh_screen()

    def action_toggle_theme(self) -> None:
        self.theme = LIGHT if self.theme == DARK else DARK

    def action_speed(self, direction: int) -> None:
        if self.controls is None:
            return
        now = self.controls.speed
        faster = [s for s in SPEEDS if s > now]
        slower = [s for s in SPEEDS if s < now]
        if direction > 0 and faster:
            self.controls.set_speed(faster[0])
        elif direction < 0 and slower:
            self.controls.set_speed(slower[-1])
        self.state.speed = self.controls.speed
        self.refresh_screen()

    def action_seek(self, seconds: float) -> None:
        if self.controls is None:
            return
        if seconds < 0:
            # Rewind: the list shows what it showed then, and what came later comes again.
            self.state.store.clear()
        self.controls.seek(seconds)
        self._feed_again()
        self.refresh_screen()

    def action_restart(self) -> None:
        """Replay from the start: the list empties and fills again at the trace's pace."""
        if self.controls is None:
            return
        self.state.store.clear()
        self.controls.restart()
        self._feed_again()
        self.refresh_screen()

    def _feed_again(self) -> None:
        # The feed worker ends with the trace: going back in time needs it again.
        if self.state.finished:
            self.state.finished = False
            self._pump()

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

    def action_step(self) -> None:
        if self.controls is None:
            return
        if not self.state.paused:
            self.action_toggle_pause()
        self.controls.step()

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

