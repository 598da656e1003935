"""What the TUI consumes: batches of Requests and source statistics from a RequestFeed."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from tracer.model import Request
from tracer.source import SourceInfo
from tracer.tui.untrack import untrack


@dataclass(frozen=True)
class FeedStats:
    """Counters for the status bar, as of the end of a batch."""

    source: SourceInfo
    events: int = 0  # total events read from the source so far
    events_per_s: float = 0.0
    lost: int = 0  # events the kernel could not hand over (ring buffer full)
    filters: str = ""  # the source's filters in words, "" = everything
    position_s: float | None = None  # replay: seconds into the trace
    duration_s: float | None = None  # replay: length of the trace
    clock_offset_ns: int = 0  # add to a request's start_ns for wall-clock time (0: it is)
    damage: str = ""  # what the source could not read (a damaged trace file), "" = nothing


@dataclass(frozen=True)
class FeedBatch:
    """Requests that are new or changed since the last poll (same id = same request)."""

    stats: FeedStats
    requests: tuple[Request, ...] = ()
    topology: dict[str, Any] | None = None  # newest enrichment snapshot, None = unchanged


class RequestFeed(Protocol):
    """A source of Requests: live probes + correlator, a replayed trace, or a list (tests)."""

    def poll(self, timeout_s: float) -> FeedBatch:
        """What arrived since the last call; returns after at most timeout_s."""
        ...

    @property
    def finished(self) -> bool:
        """True when no request will ever come again (end of a replay)."""
        ...


@runtime_checkable
class ReplayControls(Protocol):
    """Optional: feeds that replay recorded time can be paced, paused, stepped and seeked."""

    @property
    def speed(self) -> float: ...

    def set_speed(self, factor: float) -> None: ...

    def set_paused(self, paused: bool) -> None: ...

    def step(self) -> None:
        """Release the next request while paused."""
        ...

    def seek(self, delta_s: float) -> None:
        """Move the replay clock by delta_s seconds. Back in time, every request comes again
        from the trace's start up to the new position (the app empties its list first)."""
        ...

    def restart(self) -> None:
        """Back to the start of the trace: every request comes again, at its time."""
        ...


@dataclass
class _Clock:
    """Trace time driven by the wall clock at a speed factor, pausable."""

    speed: float = 1.0
    paused: bool = False
    trace_s: float = 0.0
    wall: float = field(default_factory=time.monotonic)

    def now(self) -> float:
        if self.paused:
            return self.trace_s
        return self.trace_s + (time.monotonic() - self.wall) * self.speed

    def rebase(self) -> None:
        self.trace_s, self.wall = self.now(), time.monotonic()


class ListFeed:
    """Requests from a list: all at once, or paced by their own timestamps like a replay."""

    def __init__(
        self,
        requests: Sequence[Request],
        *,
        info: SourceInfo,
        topology: dict[str, Any] | None = None,
        paced: bool = False,
        speed: float = 1.0,
        filters: str = "",
        lost: int = 0,
        clock_offset_ns: int = 0,
        damage: str = "",
    ) -> None:
        self._requests = sorted(requests, key=lambda r: r.start_ns)
        for r in self._requests:
            untrack(r)  # a whole trace waits here to be released: keep it out of collections
        self._info = info
        self._topology = topology
        self._paced = paced
        self._filters = filters
        self._lost = lost
        self._clock_offset_ns = clock_offset_ns
        self._damage = damage
        self._t0 = self._requests[0].start_ns if self._requests else 0
        self._duration = (self._requests[-1].start_ns - self._t0) / 1e9 if self._requests else 0.0
        self._next = 0
        self._events = 0
        self._rate_mark = (time.monotonic(), 0)
        self._events_per_s = 0.0
        self._steps = 0
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._clock = _Clock(speed=speed)

    @property
    def finished(self) -> bool:
        return self._next >= len(self._requests)

    @property
    def released(self) -> int:
        """How many requests poll() has handed out so far."""
        return self._next

    @property
    def speed(self) -> float:
        return self._clock.speed

    def set_speed(self, factor: float) -> None:
        with self._lock:
            self._clock.rebase()
            self._clock.speed = factor
        self._wake.set()

    def set_paused(self, paused: bool) -> None:
        with self._lock:
            self._clock.rebase()
            self._clock.paused = paused
        self._wake.set()

    def step(self) -> None:
        with self._lock:
            self._steps += 1
        self._wake.set()

    def seek(self, delta_s: float) -> None:
        with self._lock:
            self._clock.rebase()
            # After the end the clock runs on: count back from the end, not from wall time.
            now = min(self._clock.trace_s, self._duration)
            self._clock.trace_s = min(max(0.0, now + delta_s), self._duration)
            if delta_s < 0:
                # The list goes back to what it was at the new position: what started before
                # it is due at once, what started after it comes again at its time.
                self._next = 0
        self._wake.set()

    def restart(self) -> None:
        with self._lock:
            self._clock.rebase()
            self._clock.trace_s = 0.0
            self._next = 0
            self._steps = 0
            self._events = 0
        self._wake.set()

    def _due(self) -> int:
        """Index one past the last request whose time has come."""
        if not self._paced:
            return len(self._requests)
        limit = self._t0 + int(self._clock.now() * 1e9)
        end = self._next
        while end < len(self._requests) and self._requests[end].start_ns <= limit:
            end += 1
        if self._steps and end == self._next and end < len(self._requests):
            self._steps -= 1
            end += 1
            self._clock.trace_s = (self._requests[end - 1].start_ns - self._t0) / 1e9
            self._clock.wall = time.monotonic()
        return end

    def poll(self, timeout_s: float) -> FeedBatch:
        deadline = time.monotonic() + timeout_s
        while True:
            with self._lock:
                end = self._due()
                if end > self._next or self.finished or time.monotonic() >= deadline:
                    out = tuple(self._requests[self._next : end])
                    self._next = end
                    break
            # Sleep until the next request is due or a control call wakes us; never spin.
            self._wake.wait(min(0.02, max(0.0, deadline - time.monotonic())))
            self._wake.clear()
        self._events += sum(len(r.hops) for r in out)
        return FeedBatch(stats=self._stats(), requests=out, topology=self._take_topology())

    def _take_topology(self) -> dict[str, Any] | None:
        topo, self._topology = self._topology, None
        return topo

    def _stats(self) -> FeedStats:
        now = time.monotonic()
        mark_t, mark_events = self._rate_mark
        if now - mark_t >= 1.0:
            self._events_per_s = (self._events - mark_events) / (now - mark_t)
            self._rate_mark = (now, self._events)
        return FeedStats(
            source=self._info,
            events=self._events,
            events_per_s=self._events_per_s,
            lost=self._lost,
            filters=self._filters,
            clock_offset_ns=self._clock_offset_ns,
            damage=self._damage,
            position_s=min(self._clock.now(), self._duration) if self._paced else None,
            duration_s=self._duration if self._paced else None,
        )
