"""Streaming trace writer: crash-safe frames, written by a thread at least every second."""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np
import zstandard

from tracer.errors import TraceFileError
from tracer.events import EVENT_DTYPE
from tracer.tracefile.format import RecordType, TraceHeader, default_level, encode_json
from tracer.tracefile.frame_file import FrameFile

log = logging.getLogger(__name__)

FLUSH_INTERVAL_S = 1.0
CHUNK_EVENTS = 65536  # bigger chunks compress better; this one is ~5 MiB before zstd
MAX_QUEUED_CHUNKS = 8  # beyond this the caller waits for the disk (bounded memory)

# A queued write: an event array, or (record type, raw payload).
_Item = np.ndarray | tuple[RecordType, bytes]


class TraceWriter:
    """Writes a .swt file; callers only queue, a thread compresses and writes.

    Each frame reaches the kernel in one write(), at least every flush interval, so a killed
    recorder leaves every frame written so far intact. On a full disk the file is cut back to
    its last complete frame and the next call raises TraceFileError once; later calls do
    nothing. Use as a context manager, or call close() (which writes the closing summary).
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
        self._cond = threading.Condition()
        # Guarded by _cond:
        self._pending: list[np.ndarray] = []  # events not yet cut into a chunk
        self._pending_n = 0
        self._queue: list[_Item] = []
        self._queued_chunks = 0
        self._busy = False  # the thread is writing items it took from the queue
        self._stopping = False
        self._error: TraceFileError | None = None
        self._reported = False
        self.lost_total = 0
        self._topology_records = 0
        # Only the writing thread (or close() after it stopped) writes to the file.
        zstd = zstandard.ZstdCompressor(level=default_level() if level is None else level)
        self._file = FrameFile(self.path, header, zstd)
        self._thread = threading.Thread(target=self._run, name="swarmtrace-writer", daemon=True)
        self._thread.start()

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
        with self._cond:
            return self._error is not None

    @property
    def bytes_written(self) -> int:
        return self._file.good_size

    @property
    def events_written(self) -> int:
        return self._file.events_written

    def events(self, events: np.ndarray) -> None:
        """Queue events (EVENT_DTYPE, in arrival order); cheap, the thread does the work."""
        if events.dtype != EVENT_DTYPE:
            raise TypeError(f"events must be EVENT_DTYPE, not {events.dtype}")
        with self._cond:
            if not self._open() or not len(events):
                return
            self._pending.append(events)
            self._pending_n += len(events)
            if self._pending_n >= self._chunk_events:
                self._cut()
                self._cond.notify_all()
            while self._queued_chunks > MAX_QUEUED_CHUNKS and self._error is None:
                self._cond.wait()  # the disk is slower than the probe: hold the caller
            self._check()

    def topology(self, ts_ns: int, data: Any, *, snapshot: bool | None = None) -> None:
        """Store a topology snapshot or change (a JSON-able dict) as of ts_ns, in call order.

        snapshot=None: the first record is the snapshot, later ones are changes.
        """
        with self._cond:
            if not self._open():
                return
            if snapshot is None:
                snapshot = self._topology_records == 0
            self._topology_records += 1
            kind = "snapshot" if snapshot else "change"
            body = {"ts_ns": int(ts_ns), "kind": kind, "data": data}
            self._enqueue((RecordType.TOPOLOGY, encode_json(body)))

    def lost(self, total: int, ts_ns: int | None = None) -> None:
        """Record the source's cumulative lost-event counter (SourceStats.lost) when it grows."""
        with self._cond:
            if not self._open() or total <= self.lost_total:
                return
            self.lost_total = total
            ts = self._file.last_ts if ts_ns is None else ts_ns
            body = {"ts_ns": int(ts), "total": int(total)}
            self._enqueue((RecordType.LOST, encode_json(body)))

    def flush(self) -> None:
        """Write everything queued so far before returning."""
        with self._cond:
            if not self._open():
                return
            self._cut()
            self._cond.notify_all()
            while (self._queue or self._busy) and self._error is None:
                self._cond.wait()
            self._check()

    def close(self, reason: str = "complete") -> None:
        """Write what is queued and the closing summary, close the file (idempotent)."""
        with self._cond:
            if self._stopping:
                return
            self._cut()
            self._stopping = True
            self._cond.notify_all()
        self._thread.join()
        self._file.close(self._summary(reason))
        with self._cond:
            self._error = self._error or self._file.error
            self._check()

    def _check(self) -> None:
        """Raise the write error once (caller holds _cond or the thread is not running)."""
        if self._error is not None and not self._reported:
            self._reported = True
            raise self._error

    def _open(self) -> bool:
        """Raise a pending write error once; False once recording stopped (holds _cond)."""
        self._check()
        return self._error is None and not self._stopping

    def _cut(self) -> None:
        """Move pending events into the queue as one item (caller holds _cond)."""
        if self._pending_n:
            batch = self._pending[0] if len(self._pending) == 1 else np.concatenate(self._pending)
            self._pending, self._pending_n = [], 0
            self._queue.append(batch)
            self._queued_chunks += -(-len(batch) // self._chunk_events)

    def _enqueue(self, item: _Item) -> None:
        self._cut()  # file order == call order
        self._queue.append(item)
        self._cond.notify_all()

    def _run(self) -> None:
        deadline = time.monotonic() + self._flush_interval
        while True:
            with self._cond:
                while not (self._queue or self._stopping):
                    left = deadline - time.monotonic()
                    if left <= 0:
                        self._cut()
                        break
                    self._cond.wait(left)
                items, self._queue = self._queue, []
                self._queued_chunks = 0
                stopping = self._stopping
                self._busy = bool(items)
                self._cond.notify_all()  # callers held back by MAX_QUEUED_CHUNKS may go on
            try:
                for item in items:
                    self._write_item(item)
            except Exception as err:  # a bug must not leave callers waiting on a dead thread
                log.exception("trace writer failed")
                if self._file.writing:
                    self._file.fail(OSError(0, f"internal error ({err!r})"))
            with self._cond:
                self._error = self._file.error
                self._busy = False
                self._cond.notify_all()
                if items or time.monotonic() >= deadline:
                    deadline = time.monotonic() + self._flush_interval
                if (stopping and not self._queue) or not self._file.writing:
                    return

    def _write_item(self, item: _Item) -> None:
        if isinstance(item, tuple):
            self._file.record(*item)
        else:
            self._file.events(item, self._chunk_events)

    def _summary(self, reason: str) -> dict[str, Any]:
        return {
            "reason": reason,
            "events": self._file.events_written,
            "lost": self.lost_total,
            "topology_records": self._topology_records,
            "first_ts_ns": self._file.first_ts,
            "last_ts_ns": self._file.last_ts,
            "end_wall_ns": time.time_ns(),
        }
