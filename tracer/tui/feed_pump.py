"""Carries a RequestFeed's batches into the TUI's state: polled off the UI thread, applied on it."""

from __future__ import annotations

import time
from collections import deque
from typing import Any

from textual.app import App
from textual.message import Message
from textual.worker import get_current_worker

from tracer.model import Request
from tracer.tui.feed import FeedStats, ReplayControls, RequestFeed
from tracer.tui.state import TuiState
from tracer.tui.untrack import untrack

BATCH_S = 0.1  # one message to the UI per this long, however many events arrived


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


class FeedPump:
    """Polls the feed in a thread worker of the app, which gets one FeedUpdate per BATCH_S
    (never one per event) and hands it to apply()."""

    def __init__(self, app: App[None], feed: RequestFeed, state: TuiState, capacity: int) -> None:
        self._app, self._feed, self._state = app, feed, state
        # A live source cannot stop: while paused, what arrives waits here for the resume.
        self._live = not isinstance(feed, ReplayControls)
        self._held: deque[Request] = deque(maxlen=capacity)

    def start(self) -> None:
        self._app.run_worker(self._pump, name="feed", group="feed", exclusive=True, thread=True)

    def again(self) -> None:
        """The worker ends with the trace: going back in time needs it again."""
        if self._state.finished:
            self._state.finished = False
            self.start()

    def _pump(self) -> None:
        worker = get_current_worker()
        while not worker.is_cancelled:
            deadline = time.monotonic() + BATCH_S
            requests: dict[int, Request] = {}
            stats: FeedStats | None = None
            topology: dict[str, Any] | None = None
            finished = False
            while not worker.is_cancelled:
                batch = self._feed.poll(max(0.0, deadline - time.monotonic()))
                for r in batch.requests:
                    untrack(r)  # here, off the UI thread: ~2 µs a request
                    requests[r.id] = r
                stats = batch.stats
                topology = batch.topology if batch.topology is not None else topology
                finished = self._feed.finished
                if finished or time.monotonic() >= deadline:
                    break
            self._app.post_message(FeedUpdate(list(requests.values()), stats, topology, finished))
            if finished:
                return

    def apply(self, msg: FeedUpdate) -> None:
        """Take a FeedUpdate into the state (on the UI thread)."""
        st = self._state
        if msg.stats is not None:
            st.stats = msg.stats
        if msg.topology is not None:
            st.topology = msg.topology
        st.finished = msg.finished
        if st.paused and self._live:
            self._held.extend(msg.requests)
        elif msg.requests:
            st.store.apply(msg.requests)

    def release_held(self) -> None:
        """Resumed: what a live feed brought during the pause goes to the store."""
        if self._held:
            self._state.store.apply(self._held)
            self._held.clear()
