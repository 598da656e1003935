"""A trace file as an EventSource: the same correlation and sinks run on it as on live probes."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from types import TracebackType
from typing import Any

import numpy as np

from tracer.errors import TraceFileError
from tracer.events import EVENT_DTYPE
from tracer.source import SourceInfo, SourceStats
from tracer.tracefile.reader import (
    EventChunk,
    LostRecord,
    Record,
    TopologyRecord,
    TraceDamage,
    open_trace,
)

BATCH_EVENTS = 65536
_EMPTY = np.empty(0, dtype=EVENT_DTYPE)


class ReplaySource:
    """Replays a .swt file at full speed (speed=None) or paced by the events' ts_ns (speed=X).

    Topology records reach on_topology in file order, always before the events recorded after
    them and after every event recorded before them has been returned by poll().
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        speed: float | None = None,
        *,
        on_topology: Callable[[TopologyRecord], None] | None = None,
        batch_events: int = BATCH_EVENTS,
        report: bool = True,
    ) -> None:
        if speed is not None and not speed > 0:
            raise TraceFileError(f"replay speed must be > 0 (got {speed})")
        self._reader = open_trace(path, report=report)  # report=False: a second reading
        self.header = self._reader.header
        origin = ", ".join(self.header.nodes) or self.header.hostname or "unknown host"
        self.info = SourceInfo(
            backend="replay",
            kernel=self.header.kernel,
            live=False,
            notes=(f"recorded by {self.header.backend} on {origin}", *self.header.notes),
            drop_reasons=self.header.drop_reasons,
        )
        self._speed = speed
        self._on_topology = on_topology
        self._batch = batch_events
        self._records: Iterator[Record] = iter(self._reader)
        self._buf = _EMPTY
        self._pos = 0
        self._finished = False
        self._stats = SourceStats()
        self._anchor: tuple[float, int] | None = None  # (monotonic s, ts_ns) of the first event

    def __enter__(self) -> ReplaySource:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._reader.close()

    @property
    def damage(self) -> TraceFileError | None:
        """Why the file's readable part ended early (also logged as a warning), or None."""
        return self._reader.damage

    @property
    def damages(self) -> list[TraceDamage]:
        """Each damaged part read so far, in file order (the TUI can list them)."""
        return self._reader.damages

    def damage_json(self) -> dict[str, Any]:
        return self._reader.damage_json()

    @property
    def finished(self) -> bool:
        return self._finished

    def stats(self) -> SourceStats:
        return self._stats

    def lost(self) -> int:
        return self._stats.lost

    def poll(self, timeout_s: float) -> np.ndarray:
        deadline = time.monotonic() + timeout_s
        while True:
            if self._pos >= len(self._buf) and not self._next_chunk():
                self._finished = True
                return _EMPTY
            if self._speed is None:
                return self._take(self._pos + self._batch)
            now = time.monotonic()
            if self._anchor is None:
                self._anchor = (now, int(self._buf["ts_ns"][self._pos]))
            t0, ts0 = self._anchor
            due_ts = ts0 + int((now - t0) * self._speed * 1e9)
            rest = self._buf["ts_ns"][self._pos :]
            due = self._pos + int(np.searchsorted(rest, due_ts, side="right"))
            if due > self._pos:
                return self._take(min(due, self._pos + self._batch))
            next_at = t0 + (int(rest[0]) - ts0) / 1e9 / self._speed
            wait = min(deadline, next_at) - now
            if wait <= 0 and now >= deadline:
                return _EMPTY
            time.sleep(max(wait, 0.0))

    def _take(self, end: int) -> np.ndarray:
        out = self._buf[self._pos : end]
        self._pos += len(out)
        self._stats.events += len(out)
        return out

    def _next_chunk(self) -> bool:
        """Read records up to the next non-empty event chunk; False at the end of the file."""
        for rec in self._records:
            if isinstance(rec, EventChunk):
                if len(rec.events):
                    self._buf, self._pos = rec.events, 0
                    return True
            elif isinstance(rec, TopologyRecord):
                if self._on_topology is not None:
                    self._on_topology(rec)
            elif isinstance(rec, LostRecord):
                self._stats.lost = rec.total
        return False
