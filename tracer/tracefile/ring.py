"""`trace -w DIR --ring SIZE`: record all the time into a bounded ring of segment files, and
keep, as its own .swt, the window around every request that failed.

Failures that come and go ("the mesh is not reliable", moby#33911) are over before anybody
starts a trace. The ring keeps the last few seconds on disk at all times; when a request ends
in a state the user asked to keep, the segments around it are pinned, and once the window after
it has been recorded they are cut down to [start - before, end + after] and written as one
trace file. Everything else rotates away, so the directory stays within SIZE.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tracer.errors import TraceFileError
from tracer.model import Request, Status
from tracer.pipeline import Pipeline
from tracer.source import Filter
from tracer.tracefile.reader import EventChunk, LostRecord, open_trace
from tracer.tracefile.record import NamesTap, recording_header
from tracer.tracefile.topology import combined_snapshot
from tracer.tracefile.writer import TraceWriter

log = logging.getLogger(__name__)

SEGMENT_PREFIX = ".ring-"
KEPT_PREFIX = "failed-"
# What `--keep-on` accepts: a request's end state, or "failed" for every state but ok (and a
# resolver's search step, which no failure is; and a server's forward of a failed query, which
# comes with that query's failure).
KEEP_ON = {"failed": frozenset(Status) - {Status.OK, Status.OPEN, Status.DNS_SEARCH,
                                          Status.DNS_FORWARDED}} | {
    str(s): frozenset({s}) for s in Status if s not in (Status.OK, Status.OPEN)
}


@dataclass(slots=True)
class Segment:
    """One ring file: events between first_ns and last_ns (the events' monotonic clock)."""

    path: Path
    first_ns: int = 0
    last_ns: int = 0
    size: int = 0
    closed: bool = False


@dataclass(slots=True)
class Window:
    """What to keep around failed requests: one, or a burst whose windows overlap."""

    start_ns: int
    end_ns: int
    request: int  # the first failed request's id
    status: str
    wall_ns: int  # when it started, for the file name
    failed: int = 1

    @property
    def file_name(self) -> str:
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(self.wall_ns / 1e9))
        more = f"+{self.failed - 1}" if self.failed > 1 else ""
        return f"{KEPT_PREFIX}{stamp}-r{self.request}{more}-{self.status}.swt"


@dataclass(frozen=True, slots=True)
class RingConfig:
    directory: Path
    max_bytes: int
    before_s: float = 10.0
    after_s: float = 5.0
    keep_on: frozenset[Status] = KEEP_ON["failed"]

    @property
    def segment_ns(self) -> int:
        # A window spans about three segments: fine enough to rotate away what is not needed,
        # coarse enough that each segment's header and names snapshot stay a small share.
        return max(1_000_000_000, int((self.before_s + self.after_s) * 1e9 / 3))


class RingRecorder:
    """A Pipeline tap writing segments, fed finished requests to decide what to keep."""

    def __init__(self, pipe: Pipeline, config: RingConfig, filters: Filter) -> None:
        self.pipe = pipe
        self.config = config
        self.filters = filters
        self.segments: list[Segment] = []
        self.pending: list[Window] = []
        self.kept: list[Path] = []
        self._kept_sizes: dict[Path, int] = {}  # taken once: trimming runs on every tick
        self.stopped = False
        self.recorded_bytes = 0  # every segment ever written: the ring's disk traffic
        self._seq = 0
        self._writer: TraceWriter | None = None
        self._names: NamesTap | None = None
        self._opened_ns = 0
        self._last_ts = 0
        config.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._remove_stale_segments()

    # -- the tap: raw events into the current segment --------------------------------------

    def __call__(self, events: np.ndarray) -> None:
        if self.stopped or not len(events):
            return
        first, last = int(events["ts_ns"][0]), int(events["ts_ns"][-1])
        try:
            if self._writer is None or last - self._opened_ns >= self.config.segment_ns:
                self._rotate(first)
            assert self._writer is not None and self._names is not None
            seg = self.segments[-1]
            seg.first_ns = seg.first_ns or first
            seg.last_ns = max(seg.last_ns, last)
            self._last_ts = max(self._last_ts, last)
            self._writer.events(events)
            self._names.maybe_sync()
        except (TraceFileError, OSError) as err:
            # The ring stops; tracing goes on. One line says why and what was kept.
            self.stopped = True
            log.warning("ring recording stopped: %s; kept %d failure windows in %s",
                        err, len(self.kept), self.config.directory)

    # -- finished requests: which windows to keep ------------------------------------------

    def observe(self, requests: Iterable[Request]) -> None:
        """Pin the window around every request whose end state is kept; write finished ones."""
        before, after = int(self.config.before_s * 1e9), int(self.config.after_s * 1e9)
        for req in requests:
            if req.status not in self.config.keep_on:
                continue
            start, end = req.start_ns - before, (req.end_ns or req.start_ns) + after
            burst = next((w for w in self.pending if start <= w.end_ns and end >= w.start_ns),
                         None)
            if burst is not None:
                # One file per episode: a burst of failures is read as one story.
                burst.start_ns, burst.end_ns = min(burst.start_ns, start), max(burst.end_ns, end)
                burst.failed += 1
            else:
                self.pending.append(Window(start, end, req.id, str(req.status),
                                           self._wall_ns(req.start_ns)))
        self.tick()

    def tick(self) -> None:
        """Write windows whose after-part is recorded; keep the directory within its size."""
        if self.stopped:
            return
        now = self._now_ns()
        due = [w for w in self.pending if w.end_ns <= now]
        if due and self.segments and not self.segments[-1].closed and any(
                w.end_ns >= self.segments[-1].first_ns for w in due):
            self._rotate(now)  # the window's last events are in the open segment
        for window in due:
            self.pending.remove(window)
            self._keep(window)
        self._trim()

    def close(self) -> None:
        """Write every pending window with what was recorded, then remove the ring."""
        if self._writer is not None:
            self._close_segment()
        if not self.stopped:
            for window in self.pending:
                self._keep(window)
        self.pending.clear()
        for seg in self.segments:
            seg.path.unlink(missing_ok=True)
        self.segments.clear()

    # -- segments ---------------------------------------------------------------------------

    def _rotate(self, ts_ns: int) -> None:
        if self._writer is not None:
            self._close_segment()
        self._seq += 1
        path = self.config.directory / f"{SEGMENT_PREFIX}{self._seq:06d}.swt"
        self._writer = TraceWriter(path, recording_header(self.pipe, self.filters))
        self._names = NamesTap(self._writer, self.pipe)
        self._names.sync()  # each segment carries the names it needs: it is read on its own
        self._opened_ns = ts_ns
        self.segments.append(Segment(path))
        self._trim()

    def _close_segment(self) -> None:
        assert self._writer is not None and self._names is not None
        seg = self.segments[-1]
        try:
            self._names.sync()
        finally:
            self._writer.close()
            seg.size = seg.path.stat().st_size
            seg.closed = True
            self.recorded_bytes += seg.size
            self._writer = self._names = None

    def _trim(self) -> None:
        """Drop the oldest segments no pending window needs, then the oldest kept windows."""
        while self._total_bytes() > self.config.max_bytes:
            victim = next((s for s in self.segments[:-1] if s.closed and not self._needed(s)),
                          None)
            if victim is not None:
                self.segments.remove(victim)
                victim.path.unlink(missing_ok=True)
            elif self.kept:
                oldest = self.kept.pop(0)
                del self._kept_sizes[oldest]
                log.warning("ring: %s removed to stay within %d bytes", oldest.name,
                            self.config.max_bytes)
                oldest.unlink(missing_ok=True)
            else:
                return  # only what pending windows need: they are written soon, then freed

    def _needed(self, seg: Segment) -> bool:
        earliest = min((w.start_ns for w in self.pending), default=None)
        # A request still in flight may fail later: its start lies at most `before` back.
        horizon = self._now_ns() - int(self.config.before_s * 1e9)
        if earliest is not None:
            horizon = min(horizon, earliest)
        return seg.last_ns >= horizon

    def _total_bytes(self) -> int:
        open_bytes = self._writer.bytes_written if self._writer is not None else 0
        closed = sum(s.size for s in self.segments if s.closed)
        return closed + open_bytes + sum(self._kept_sizes.values())

    def _remove_stale_segments(self) -> None:
        # A ring left by a killed tracer is scratch space, not a result.
        for path in self.config.directory.glob(f"{SEGMENT_PREFIX}*.swt"):
            path.unlink(missing_ok=True)

    # -- kept windows -----------------------------------------------------------------------

    def _keep(self, window: Window) -> None:
        parts = [s for s in self.segments if s.closed and s.first_ns
                 and s.first_ns <= window.end_ns and s.last_ns >= window.start_ns]
        if not parts:
            return
        path = self.config.directory / window.file_name
        try:
            _cut_window(parts, window, path)
        except TraceFileError as err:
            log.warning("ring: could not keep request %d's window: %s", window.request, err)
            return
        self.kept.append(path)
        self._kept_sizes[path] = path.stat().st_size
        log.info("ring: kept %s", path)

    def _now_ns(self) -> int:
        # Live events carry CLOCK_MONOTONIC; a replayed source only its own timestamps.
        live = time.monotonic_ns() if self.pipe.source.info.live else 0
        return max(live, self._last_ts)

    def _wall_ns(self, ts_ns: int) -> int:
        return ts_ns - time.monotonic_ns() + time.time_ns()


def _cut_window(parts: list[Segment], window: Window, path: Path) -> None:
    """Write the events of `parts` within the window, with the names, as one trace file."""
    with open_trace(parts[0].path) as first:
        header = first.header
    tmp = path.with_name(path.name + ".part")
    with TraceWriter(tmp, header) as out:
        lost_before = lost_after = None
        for seg in parts:
            with open_trace(seg.path) as reader:
                for rec in reader:
                    if isinstance(rec, EventChunk):
                        ts = rec.events["ts_ns"]
                        inside = rec.events[(ts >= window.start_ns) & (ts <= window.end_ns)]
                        if len(inside):
                            out.events(inside)
                    elif isinstance(rec, LostRecord):
                        if rec.ts_ns < window.start_ns:
                            lost_before = rec.total
                        elif rec.ts_ns <= window.end_ns:
                            lost_after = rec.total
        # The last segment's names hold every change up to its end: one snapshot serves all.
        with open_trace(parts[-1].path) as last:
            names = combined_snapshot(last.topology())
        if names is not None:
            out.topology(window.start_ns, names, snapshot=True)
        if lost_after is not None and lost_after > (lost_before or 0):
            out.lost(lost_after - (lost_before or 0), window.end_ns)
    os.replace(tmp, path)


def parse_size(text: str) -> int:
    """'64M' -> bytes (K, M, G are powers of 1024)."""
    units = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    t = text.strip().upper().removesuffix("B").removesuffix("I")
    unit = t[-1] if t and t[-1] in units else ""
    try:
        value = float(t.removesuffix(unit)) if unit else float(t)
    except ValueError:
        raise ValueError(f"not a size: {text!r} (e.g. 64M, 1G)") from None
    if not value > 0 or value * units[unit] > 1 << 50:
        raise ValueError(f"size out of range: {text!r} (e.g. 64M, 1G)")
    return int(value * units[unit])


@contextmanager
def ring_recording(pipe: Pipeline, config: RingConfig, filters: Filter) -> Iterator[RingRecorder]:
    """Record `pipe` into the ring while the block runs; feed it requests with .observe()."""
    ring = RingRecorder(pipe, config, filters)
    pipe.taps.append(ring)
    try:
        yield ring
    finally:
        pipe.taps.remove(ring)
        try:
            ring.close()
        except (TraceFileError, OSError) as err:
            log.warning("ring: %s", err)
