"""Feeds over the tracing Pipeline: live (probes -> correlate -> names) and replayed files."""

from __future__ import annotations

import dataclasses
import time
from typing import Any

from tracer.gc_pacing import paced_gc
from tracer.model import Request
from tracer.pipeline import Pipeline
from tracer.source import SourceInfo
from tracer.tui.collector import correlating
from tracer.tui.feed import FeedBatch, FeedStats, ListFeed

OPEN_EVERY_S = 0.5  # how often in-flight requests are shown before they complete
TOPOLOGY_EVERY_S = 2.0


class PipelineFeed:
    """Live requests from a Pipeline; in-flight ones show up as `open` until they complete."""

    def __init__(self, pipe: Pipeline, filters: str = "") -> None:
        self.pipe = pipe
        self.filters = filters
        self._done = False
        self._rate: tuple[float, int] = (time.monotonic(), 0)
        self._events_per_s = 0.0
        self._open_at = 0.0
        self._topology_at = 0.0
        self._topology: dict[str, Any] | None = None
        # Events carry CLOCK_MONOTONIC times; the list shows the wall clock.
        self._clock_offset_ns = time.time_ns() - time.monotonic_ns()

    @property
    def finished(self) -> bool:
        return self._done

    def poll(self, timeout_s: float) -> FeedBatch:
        if self._done:
            time.sleep(timeout_s)
            return FeedBatch(stats=self._stats())
        arr = self.pipe.pump(timeout_s)
        source = self.pipe.source
        with correlating():
            requests = self.pipe.correlate(arr)
            if source.finished:
                requests += self.pipe.flush()
                self._done = True
        now = time.monotonic()
        if now - self._open_at >= OPEN_EVERY_S and not self._done:
            self._open_at = now
            requests = self.pipe.correlator.open_requests + requests
        return FeedBatch(stats=self._stats(), requests=tuple(requests), topology=self._names(now))

    def _names(self, now: float) -> dict[str, Any] | None:
        """The resolver's snapshot when it changed, looked at every few seconds."""
        names = self.pipe.names
        if names is None or now - self._topology_at < TOPOLOGY_EVERY_S:
            return None
        self._topology_at = now
        snap = names.snapshot()
        if snap == self._topology:
            return None
        self._topology = snap
        return snap

    def _stats(self) -> FeedStats:
        now = time.monotonic()
        mark_t, mark_events = self._rate
        if now - mark_t >= 1.0:
            self._events_per_s = (self.pipe.events - mark_events) / (now - mark_t)
            self._rate = (now, self.pipe.events)
        src = self.pipe.source
        return FeedStats(
            # Read each time: agents' sources name the nodes missing right now.
            source=with_note(src.info, self.pipe.lb_note),
            events=self.pipe.events,
            events_per_s=self._events_per_s,
            lost=src.lost(),
            filters=self.filters,
            clock_offset_ns=self._clock_offset_ns,
        )


def with_note(info: SourceInfo, note: str) -> SourceInfo:
    """The source's info plus the lab's note ("IPVS stand-in ...") for the status bar."""
    if not note or note in info.notes:
        return info
    return dataclasses.replace(info, notes=(*info.notes, note))


def drain(pipe: Pipeline) -> list[Request]:
    """Every request of a finite source (a trace file read at full speed), before the app
    runs: with `replay`'s GC policy, the app's own (tracer/tui/collector.py) once it runs."""
    out: list[Request] = []
    with paced_gc() as between_polls:
        while not pipe.source.finished:
            between_polls()
            out += pipe.poll(0.0)
        return out + pipe.flush()


def replay_feed(pipe: Pipeline, *, speed: float = 1.0, filters: str = "") -> ListFeed:
    """A replayed trace for the TUI: correlated up front, then paced (speed, pause, step, seek)."""
    names = pipe.names
    # A trace file's header ties the events' CLOCK_MONOTONIC to the wall clock of the recording.
    header = getattr(pipe.source, "header", None)
    offset = header.start_wall_ns - header.start_mono_ns if header is not None else 0
    requests = drain(pipe)
    # Read after draining: a damaged file is only known once it has been read to the end.
    damage = getattr(pipe.source, "damage", None)
    return ListFeed(
        requests,
        info=with_note(pipe.source.info, pipe.lb_note),
        topology=names.snapshot() if names is not None else None,
        paced=True,
        speed=speed,
        filters=filters,
        lost=pipe.source.stats().lost,
        clock_offset_ns=offset,
        damage=str(damage) if damage else "",
    )
