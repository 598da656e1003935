"""Streaming trace writer: crash-safe frames, flushed at least every second."""

from __future__ import annotations

import errno
import logging
import os
import time
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np
import zstandard

from tracer.errors import TraceFileError
from tracer.events import EVENT_DTYPE
from tracer.tracefile.format import (
    MAGIC,
    PREAMBLE,
    SCHEMA_VERSION,
    RecordType,
    TraceHeader,
    default_level,
    encode_events,
    encode_json,
    frame,
)

log = logging.getLogger(__name__)

FLUSH_INTERVAL_S = 1.0
CHUNK_EVENTS = 65536  # bigger chunks compress better; this one is ~5 MiB before zstd


class TraceWriter:
    """Writes a .swt file: call events() on every poll (also with empty arrays, to flush on time).

    Each frame reaches the kernel in one write(), so a killed recorder leaves every frame
    written so far intact. On a full disk the file is cut back to its last complete frame and
    TraceFileError is raised once; later calls do nothing.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        header: TraceHeader,
        *,
        flush_interval_s: float = FLUSH_INTERVAL_S,
        chunk_events: int = CHUNK_EVENTS,
        level: int | None = None,
    ) -> None:
        self.path = Path(path)
        self.header = header
        self._flush_interval = flush_interval_s
        self._chunk_events = chunk_events
        self._zstd = zstandard.ZstdCompressor(level=default_level() if level is None else level)
        self._pending: list[np.ndarray] = []
        self._pending_n = 0
        self._last_flush = time.monotonic()
        self._good_size = 0  # end of the last complete frame
        self._failed = False
        self.events_written = 0
        self.lost_total = 0
        self._topology_records = 0
        self._first_ts = 0
        self._last_ts = 0
        try:
            # 0600: a trace names hosts, addresses and services of a production cluster.
            self._fd: int | None = os.open(
                self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600
            )
            os.fchmod(self._fd, 0o600)  # O_CREAT's mode does not apply to an existing file
        except OSError as err:
            raise TraceFileError(f"cannot create trace file {self.path}: {err.strerror}") from err
        self._write(PREAMBLE.pack(MAGIC, SCHEMA_VERSION, 0))
        self._record(RecordType.HEADER, encode_json(header.to_json()))

    def __enter__(self) -> TraceWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # Ctrl-C ends a recording normally: the file still gets its summary.
        reason = "complete" if exc_type in (None, KeyboardInterrupt) else "error"
        self.close(reason)

    @property
    def failed(self) -> bool:
        """True once a write failed (full disk): the recording has stopped."""
        return self._failed

    @property
    def bytes_written(self) -> int:
        return self._good_size

    def events(self, events: np.ndarray) -> None:
        """Queue events (EVENT_DTYPE); writes a chunk when it is full or a second has passed."""
        if self._fd is None:
            return
        if len(events):
            if events.dtype != EVENT_DTYPE:
                raise TypeError(f"events must be EVENT_DTYPE, not {events.dtype}")
            self._pending.append(events)
            self._pending_n += len(events)
            if not self._first_ts:
                self._first_ts = int(events["ts_ns"][0])
            self._last_ts = int(events["ts_ns"][-1])
        if self._pending_n >= self._chunk_events:
            self._flush_events()
        elif time.monotonic() - self._last_flush >= self._flush_interval:
            self.flush()

    def topology(self, ts_ns: int, data: Any, *, snapshot: bool | None = None) -> None:
        """Store a topology snapshot or change (a JSON-able dict) as of ts_ns, in call order.

        snapshot=None: the first record is the snapshot, later ones are changes.
        """
        if self._fd is None:
            return
        if snapshot is None:
            snapshot = self._topology_records == 0
        self._flush_events()  # keep file order == call order
        kind = "snapshot" if snapshot else "change"
        self._record(
            RecordType.TOPOLOGY, encode_json({"ts_ns": int(ts_ns), "kind": kind, "data": data})
        )
        self._topology_records += 1

    def lost(self, total: int, ts_ns: int | None = None) -> None:
        """Record the source's cumulative lost-event counter (SourceStats.lost) when it grows."""
        if self._fd is None or total <= self.lost_total:
            return
        self.lost_total = total
        self._flush_events()
        ts = self._last_ts if ts_ns is None else ts_ns
        self._record(RecordType.LOST, encode_json({"ts_ns": int(ts), "total": int(total)}))

    def flush(self) -> None:
        """Write queued events now."""
        self._flush_events()
        self._last_flush = time.monotonic()

    def close(self, reason: str = "complete") -> None:
        """Flush, write the closing summary and close the file (idempotent)."""
        if self._fd is None:
            return
        try:
            if not self._failed:
                self._flush_events()
                self._record(RecordType.SUMMARY, encode_json(self._summary(reason)))
                os.fsync(self._fd)
        finally:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None

    def _summary(self, reason: str) -> dict[str, Any]:
        return {
            "reason": reason,
            "events": self.events_written,
            "lost": self.lost_total,
            "topology_records": self._topology_records,
            "first_ts_ns": self._first_ts,
            "last_ts_ns": self._last_ts,
            "end_wall_ns": time.time_ns(),
        }

    def _flush_events(self) -> None:
        if not self._pending_n:
            return
        batch = self._pending[0] if len(self._pending) == 1 else np.concatenate(self._pending)
        self._pending.clear()
        self._pending_n = 0
        for start in range(0, len(batch), self._chunk_events):
            chunk = batch[start : start + self._chunk_events]
            self._record(RecordType.EVENTS, encode_events(chunk))
            if self._fd is None:
                return
            self.events_written += len(chunk)
        self._last_flush = time.monotonic()

    def _record(self, kind: RecordType, raw: bytes) -> None:
        self._write(frame(kind, self._zstd.compress(raw)))

    def _write(self, data: bytes) -> None:
        if self._fd is None:
            return
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(self._fd, view) :]
        except OSError as err:
            self._fail(err)
        self._good_size += len(data)

    def _fail(self, err: OSError) -> None:
        """Cut the file back to its last whole frame, close it, and say so in one line."""
        assert self._fd is not None
        self._failed = True
        try:
            os.ftruncate(self._fd, self._good_size)
        finally:
            os.close(self._fd)
            self._fd = None
        what = "disk full" if err.errno in (errno.ENOSPC, errno.EDQUOT) else err.strerror
        raise TraceFileError(
            f"{what} writing {self.path}: recording stopped; the {self.events_written} events "
            "written before are readable (free space and record again)"
        ) from err
