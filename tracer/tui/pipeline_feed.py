"""A RequestFeed over the core pipeline: live probes or a replayed trace file."""

from __future__ import annotations

import time
from typing import Any

from tracer.pipeline import Pipeline
from tracer.tui.feed import FeedBatch, FeedStats

RATE_WINDOW_S = 1.0


class PipelineFeed:
    """Polls a Pipeline (source -> correlator -> names) and hands the TUI its requests."""

    def __init__(self, pipe: Pipeline, filters: str = "") -> None:
        self._pipe = pipe
        self._filters = filters
        self._rate_mark = (time.monotonic(), 0)
        self._rate = 0.0
        self._topology_sent = False

    @property
    def finished(self) -> bool:
        return self._pipe.source.finished and not self._pipe.correlator.open_requests

    def poll(self, timeout_s: float) -> FeedBatch:
        reqs = self._pipe.poll(timeout_s)
        if self._pipe.source.finished:
            reqs += self._pipe.flush()
        now = time.monotonic()
        t0, n0 = self._rate_mark
        if now - t0 >= RATE_WINDOW_S:
            self._rate = (self._pipe.events - n0) / (now - t0)
            self._rate_mark = (now, self._pipe.events)
        topology: dict[str, Any] | None = None
        if not self._topology_sent and self._pipe.names is not None:
            topology = self._pipe.names.snapshot()
            self._topology_sent = True
        stats = FeedStats(source=self._pipe.source.info, events=self._pipe.events,
                          events_per_s=self._rate, lost=self._pipe.source.stats().lost,
                          filters=self._filters)
        return FeedBatch(stats=stats, requests=tuple(reqs), topology=topology)
