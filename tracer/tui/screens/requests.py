"""The main screen: the live request list above, the selected request's hop path below."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from typing import ClassVar

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.timer import Timer
from textual.widgets import Input

from tracer.model import HopKind, Request, Status
from tracer.tui.screens.base import TracerScreen
from tracer.tui.state import TuiState
from tracer.tui.store import Query, QueryJob, task_of
from tracer.tui.widgets.filter_box import FilterBox
from tracer.tui.widgets.hop_path import HopPath
from tracer.tui.widgets.request_list import RequestList

FILTER_DELAY_S = 0.05  # type-ahead: filter once typing pauses, not on every key of a burst
INLINE_FILTER = 20_000  # up to this many requests, filter at once
FILTER_SLICE_S = 0.001  # a bigger filter runs in slices this long between keys and frames
KEY_FIRST_S = 0.04  # after a key, a running filter waits this long: the key's frame comes first


def is_drop(r: Request) -> bool:
    """`n` jumps to it: every request with a verdict (not ok), or dropped."""
    return r.verdict is not None or r.status is Status.DROPPED


class RequestsScreen(TracerScreen):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("slash", "filter", "filter", id="requests.filter"),
        Binding("f", "follow", "follow", id="requests.follow"),
        Binding("n", "next_drop", "drop", id="requests.next_drop"),
        Binding("escape", "clear_filter", "Clear filter", show=False, id="requests.clear"),
    ]

    def __init__(self, state: TuiState) -> None:
        super().__init__(state)
        self._filter_timer: Timer | None = None
        self._filter_job: QueryJob | None = None  # running a slice at a time

    def compose(self) -> ComposeResult:
        yield RequestList(self.state.store, id="requests")
        yield HopPath(id="path", focusable=True)
        yield FilterBox(
            placeholder="filter: words or service: task: client: status: mode: node:   "
            "(Enter keeps it, Esc clears)",
            id="filter",
            select_on_focus=False,  # `/` again refines the filter rather than replacing it
        )
        yield from self.compose_footer()

    @property
    def request_list(self) -> RequestList:
        return self.query_one(RequestList)

    def on_mount(self) -> None:
        self.request_list.follow = self.state.follow
        self.request_list.focus()

    def select(self, index: int) -> None:
        """Select the request at index (go to request N) and stop following."""
        self.state.follow = False
        lst = self.request_list
        lst.follow = False
        lst.select_index(index)
        self.state_changed()

    def redraw(self) -> None:
        lst = self.request_list
        if self.state.stats is not None:
            lst.clock_offset_ns = self.state.stats.clock_offset_ns
        lst.store_changed()
        self._fit_list()
        self._count_matches()
        # The selected request may have been updated (open -> ok): redraw its path.
        path = self.query_one(HopPath)
        if path.request is not None:
            fresh = self.state.store.get(path.request.id)
            if fresh is not None and not path.shows(fresh):
                self._show(fresh)

    def _fit_list(self) -> None:
        """The list as tall as its rows, up to 35% of the screen: the path gets the rest."""
        room = max(self.size.height - 2, 8)  # status bar and key bar
        rows = min(len(self.state.store) + 1, max(int(room * 0.35), 4))
        height = max(rows, 4)
        lst = self.request_list
        if lst.styles.height is None or lst.styles.height.value != height:
            lst.styles.height = height

    def on_resize(self) -> None:
        self._fit_list()

    def _count_matches(self) -> None:
        box = self.query_one("#filter", Input)
        store = self.state.store
        title = f"{len(store)} of {store.total} match" if store.query_text else "filter"
        if box.border_title != title:
            box.border_title = title

    def _show(self, request: Request | None) -> None:
        color = self.state.store.color_of(task_of(request)) if request else 0
        self.query_one(HopPath).show(request, task_color=color)
        self.call_after_refresh(self._scroll_path)

    def _scroll_path(self) -> None:
        """Show a drop where it happened; any other path from its start."""
        path = self.query_one(HopPath)
        r, drawing = path.request, path.drawing
        hops = r.hops if r is not None else []
        drop = next((i for i, h in enumerate(hops) if h.kind is HopKind.DROP), None)
        line = drawing.hop_lines.get(drop) if drawing is not None and drop is not None else None
        y = max(0, line - path.size.height // 2) if line else 0
        if y != path.scroll_y:  # scrolling, even in place, costs a partial layout
            path.scroll_to(y=y, animate=False)

    @on(RequestList.Selected)
    def _selected(self, event: RequestList.Selected) -> None:
        self._show(event.request)
        # Keep the app's follow flag in step with the list (moving up stops following).
        if self.state.follow != self.request_list.follow:
            self.state.follow = self.request_list.follow
            self.update_status()

    # -- actions -----------------------------------------------------------------------------

    def action_follow(self) -> None:
        self.state.follow = not self.state.follow
        self.request_list.follow = self.state.follow
        self.state_changed()

    def action_next_drop(self) -> None:
        store, lst = self.state.store, self.request_list
        start = lst.cursor + 1
        found = store.find(start, is_drop)
        if found is None and start > 0:
            found = store.find(0, is_drop)
        if found is None:
            self.notify("No dropped request in the list.", timeout=3)
            return
        self.state.follow = lst.follow = False
        lst.cursor = found
        self.state_changed()

    def action_filter(self) -> None:
        box = self.query_one("#filter", Input)
        box.display = True
        box.focus()

    def action_clear_filter(self) -> None:
        box = self.query_one("#filter", Input)
        box.value = ""
        box.display = False
        self._apply_filter("")
        self.request_list.focus()

    def set_filter(self, text: str) -> None:
        """Filter the list now (command palette, tests)."""
        box = self.query_one("#filter", Input)
        box.value = text
        box.display = bool(text)
        self._apply_filter(text)

    @on(Input.Changed, "#filter")
    def _typed(self, event: Input.Changed) -> None:
        if self._filter_timer is not None:
            self._filter_timer.stop()
        self._filter_timer = self.set_timer(FILTER_DELAY_S, lambda: self._apply_filter(event.value))

    @on(Input.Submitted, "#filter")
    def _submitted(self, event: Input.Submitted) -> None:
        self._apply_filter(event.value)
        event.input.display = bool(event.value)
        self.request_list.focus()

    def _apply_filter(self, text: str) -> None:
        store = self.state.store
        wanted = Query.parse(text)
        running = self._filter_job
        if wanted == (running.query if running is not None else store.query):
            return
        if running is not None:
            running.cancelled = True
        job = store.query_job(text)
        if len(job.ids) <= INLINE_FILTER or not wanted.terms:  # no filter: nothing to match
            self._install(job, job.run())
        else:
            self._filter_job = job
            self._filter_in_slices(job)

    @work(group="filter")
    async def _filter_in_slices(self, job: QueryJob) -> None:
        # 100k requests take ~0.4 s of CPU the first time (their words are cached after), ~40
        # ms after. In a thread that work fought the UI for the GIL: on a loaded machine the
        # thread was often descheduled holding it, and keys waited 50-100 ms. Here it runs on
        # the UI's own event loop in short slices, and pauses while a key is handled and drawn.
        while True:
            wait = self.state.input_at + KEY_FIRST_S - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            elif job.advance(FILTER_SLICE_S):
                break
            else:
                await asyncio.sleep(0)
        self._install(job, job.matched)

    def _install(self, job: QueryJob, matched: deque[int]) -> None:
        if job.cancelled:
            return
        if job is self._filter_job:
            self._filter_job = None
        self.state.store.install(job, matched)
        self.state_changed()
