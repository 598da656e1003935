"""Talk mode: one request at a time, one hop per key press, one sentence per hop."""

from __future__ import annotations

from typing import ClassVar, Protocol, cast

from rich.style import Style
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.timer import Timer

from tracer.model import Request
from tracer.sinks.narrate import narrate, outcome
from tracer.tui.colors import palette_of
from tracer.tui.feed import ReplayControls
from tracer.tui.path_render import hop_label, hop_text
from tracer.tui.screens.base import TracerScreen
from tracer.tui.stage_render import Stage
from tracer.tui.state import TuiState
from tracer.tui.store import task_of
from tracer.tui.widgets.hop_path import HopPath
from tracer.tui.widgets.text_box import TextBox

# One key bar entry per pair of arrows ("→← hop"): four entries did not fit 80 columns.
HOP = Binding.Group("hop", compact=True)
REQUEST = Binding.Group("request", compact=True)


class TalkHost(Protocol):
    """What talk mode needs of the app: typed here so this module never imports the app."""

    controls: ReplayControls | None

    def action_toggle_pause(self) -> None: ...

    def action_step(self) -> None: ...


class TalkScreen(TracerScreen):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding(
            "right,l,enter", "hop(1)", "next hop", key_display="→", id="talk.next_hop", group=HOP
        ),
        Binding("left,h", "hop(-1)", "back", key_display="←", id="talk.prev_hop", group=HOP),
        Binding(
            "down,j", "request(1)", "next request", key_display="↓", id="talk.next_request",
            group=REQUEST,
        ),
        Binding(
            "up,k", "request(-1)", "previous", key_display="↑", id="talk.prev_request",
            group=REQUEST,
        ),
        Binding("home", "first", "first", show=False, id="talk.first"),
        Binding("end", "last", "last", show=False, id="talk.last"),
        Binding("a", "auto", "auto", id="talk.auto"),
        Binding("p", "present", "present", id="talk.present"),
    ]
    AUTO_S = 3.0  # seconds per hop when advancing by itself, at replay speed 1

    def __init__(self, state: TuiState) -> None:
        super().__init__(state)
        self.index = 0  # into the store's (filtered) list
        self.hop = 0
        self.request_id: int | None = None
        self._position: tuple[int, int] | None = None
        self._waiting = False  # asked the replay for the next request, not here yet
        self._auto: Timer | None = None
        self._auto_pace = 0.0  # seconds per hop of the running auto-advance
        self._paused_here = False  # talk mode paused the replay (and resumes it on leaving)

    def compose(self) -> ComposeResult:
        yield TextBox(id="talk-title")
        yield HopPath(id="talk-path")
        yield TextBox(id="stage")
        yield TextBox(id="hop-now")
        yield TextBox(id="sentence")
        yield from self.compose_footer()

    def on_mount(self) -> None:
        self.watch(self.app, "theme", lambda: self._draw(self.request), init=False)

    def on_resize(self) -> None:
        if self.has_class("presenting"):  # the picture is laid out for the width
            self.call_after_refresh(lambda: self._draw(self.request))

    def action_present(self) -> None:
        """Presentation layout: the path as a picture with the packet on it, large narration."""
        self.toggle_class("presenting")
        self.call_after_refresh(lambda: self._draw(self.request))

    def start_at(self, index: int) -> None:
        """Begin with the request at index (the one selected in the list), at its first hop."""
        self.index, self.hop = index, 0
        self.request_id = self._position = None
        if self.is_mounted:
            self.state_changed()

    @property
    def request(self) -> Request | None:
        store = self.state.store
        return store.at(self.index) if 0 <= self.index < len(store) else None

    def on_screen_resume(self) -> None:
        # The speaker sets the pace: a replay waits while the talk is on (space resumes it).
        app = self.tracer_app
        if app.controls is not None and not self.state.paused:
            app.action_toggle_pause()
            self._paused_here = True
        super().on_screen_resume()

    def on_screen_suspend(self) -> None:
        # Back to the other screens: the replay runs on, as it did before the talk.
        if self._paused_here and self.state.paused:
            self.tracer_app.action_toggle_pause()
        self._paused_here = False

    @property
    def tracer_app(self) -> TalkHost:
        return cast(TalkHost, self.app)

    def redraw(self) -> None:
        store = self.state.store
        if self.request_id is not None and self._position is not None:
            # Old requests left or the filter changed: find ours again, else keep the index.
            at = store.index_at(self._position, self.request_id)
            if at is not None:
                self.index = at
        if self._waiting and self.index + 1 < len(store):
            self._waiting, self.index, self.hop = False, self.index + 1, 0
        if self._auto is not None and self._auto_pace != self._pace():
            self._start_auto()  # the speaker changed the speed: the pace follows at once
        if not len(store):
            # A rewind or restart emptied the list: keep our place until requests come back.
            self._draw(None)
            return
        self._select(min(self.index, len(store) - 1))
        self._draw(self.request)

    def _select(self, index: int) -> None:
        self.index = index
        r = self.request
        self.request_id = r.id if r is not None else None
        self._position = self.state.store.position(index) if r is not None else None

    def _draw(self, r: Request | None) -> None:
        title = self.query_one("#talk-title", TextBox)
        sentence = self.query_one("#sentence", TextBox)
        path = self.query_one(HopPath)
        if r is None or not r.hops:
            title.update(Text(" Talk mode", style="bold"))
            sentence.update("Waiting for the first request…")
            path.show(None)
            self.query_one("#stage", TextBox).update("")
            self.query_one("#hop-now", TextBox).update("")
            return
        self.hop = max(0, min(self.hop, len(r.hops) - 1))
        head = Text.assemble(
            (f" #{r.id} {r.mode}", "bold"),
            f"  │  request {self.index + 1}/{len(self.state.store)}  │  ",
            (f"hop {self.hop + 1}/{len(r.hops)}", "bold"),
            f"  │  {outcome(r)}  │  {r.client.src} → {r.client.dst}",
        )
        title.update(head)
        sentence.update(narrate(r, self.hop))
        if self.has_class("presenting"):
            self._stage(r)
            return
        path.show(r, task_color=self.state.store.color_of(task_of(r)), highlight=self.hop)
        self.call_after_refresh(self._scroll_to_hop)

    def _stage(self, r: Request) -> None:
        stage = self.query_one("#stage", TextBox)
        drawing = Stage(r, stage.content_size.width or self.size.width, palette_of(self.app),
                        self.hop)
        # A tall screen (160x45) centres the picture between the title and the narration.
        above = max(0, (stage.content_size.height - len(drawing.lines)) // 2)
        stage.update(Text("\n").join([Text()] * above + drawing.lines))
        hop = drawing.hops[self.hop]
        now = Text.assemble(
            (f" {hop_label(hop)} ", Style(bold=True, reverse=True)),
            "  ",
            (hop_text(r, hop), Style(bold=True)),
        )
        self.query_one("#hop-now", TextBox).update(now)

    def _scroll_to_hop(self) -> None:
        path = self.query_one(HopPath)
        line = path.highlight_line()
        y = max(0, line - path.size.height // 2) if line is not None else 0
        if y != path.scroll_y:  # scrolling, even in place, costs a partial layout
            path.scroll_to(y=y, animate=False)

    def action_hop(self, delta: int) -> None:
        r = self.request
        if r is None:
            return
        nxt = self.hop + delta
        if nxt >= len(r.hops):
            self.action_request(1)
        elif nxt < 0:
            self.action_request(-1, last_hop=True)
        else:
            self.hop = nxt
            self._draw(r)

    def action_request(self, delta: int, last_hop: bool = False) -> None:
        n = len(self.state.store)
        if delta > 0 and self.index + delta >= n and not self.state.finished \
                and self.tracer_app.controls is not None:
            # Past the newest request of a replay: release the next one, show it when it comes.
            self._waiting = True
            self.tracer_app.action_step()
            return
        if not 0 <= self.index + delta < n:
            word = "No more requests." if delta > 0 else "This is the first request."
            self.notify(word, timeout=2)
            return
        self._select(self.index + delta)
        r = self.state.store.at(self.index)
        self.hop = len(r.hops) - 1 if last_hop else 0
        self._draw(r)

    def action_first(self) -> None:
        self.start_at(0)

    def action_last(self) -> None:
        self.start_at(max(len(self.state.store) - 1, 0))

    def action_auto(self) -> None:
        """Advance one hop every AUTO_S / speed seconds until pressed again."""
        if self._auto is not None:
            self._auto.stop()
            self._auto = None
            self.notify("Auto-advance off.", timeout=2)
            return
        self._start_auto()
        self.notify(f"Auto-advance: one hop every {self._auto_pace:g} s (+ - change it, a stops "
                    "it).", timeout=2)

    def _pace(self) -> float:
        return self.AUTO_S / (self.state.speed or 1.0)

    def _start_auto(self) -> None:
        if self._auto is not None:
            self._auto.stop()
        self._auto_pace = self._pace()
        self._auto = self.set_interval(self._auto_pace, lambda: self.action_hop(1))
