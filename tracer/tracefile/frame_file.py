"""The file side of a recording: whole frames, each reaching the kernel in one write()."""

from __future__ import annotations

import errno
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
import zstandard

from tracer.errors import OutputError, TraceFileError
from tracer.tracefile.format import (
    MAGIC,
    PREAMBLE,
    SCHEMA_VERSION,
    RecordType,
    TraceHeader,
    encode_events,
    encode_json,
    frame,
)
from tracer.tracefile.output import OutputFile

log = logging.getLogger(__name__)


class FrameFile:
    """A .swt file being written by one thread: its header on creation, then frames.

    A failed write cuts the file back to its last whole frame and closes it; `error` then holds
    the one line to show, and later writes do nothing.
    """

    def __init__(self, path: Path, header: TraceHeader, zstd: zstandard.ZstdCompressor) -> None:
        self.path = path
        self._zstd = zstd
        self.error: TraceFileError | None = None
        self.good_size = 0  # end of the last complete frame
        self.events_written = 0
        self.first_ts = 0
        self.last_ts = 0
        # 0600: a trace names hosts, addresses and services of a production cluster.
        try:
            out = OutputFile(path, mode=0o600)
        except OutputError as err:
            raise TraceFileError(str(err)) from err
        head = PREAMBLE.pack(MAGIC, SCHEMA_VERSION, 0) + frame(
            RecordType.HEADER, zstd.compress(encode_json(header.to_json()))
        )
        try:
            _write_all(out.fd, head)
            # An existing file is replaced only now that the new one is a readable trace.
            out.publish()
        except OSError as err:
            out.discard()
            raise TraceFileError(f"cannot create trace file {path}: {err.strerror}") from err
        except OutputError as err:
            raise TraceFileError(str(err)) from err
        if out.replaced is not None:
            log.warning("recording to %s%s", path, out.replaced_note())
        self._fd: int | None = out.release()
        self.good_size = len(head)

    @property
    def writing(self) -> bool:
        return self._fd is not None

    def events(self, events: np.ndarray, chunk_events: int) -> None:
        """Events (EVENT_DTYPE) as frames of at most chunk_events each."""
        self.first_ts = self.first_ts or int(events["ts_ns"][0])
        self.last_ts = int(events["ts_ns"][-1])
        for start in range(0, len(events), chunk_events):
            chunk = events[start : start + chunk_events]
            self.record(RecordType.EVENTS, encode_events(chunk).data)
            if self._fd is None:
                return
            self.events_written += len(chunk)

    def record(self, kind: RecordType, raw: bytes | memoryview) -> None:
        if self._fd is None:
            return
        data = frame(kind, self._zstd.compress(raw))
        try:
            _write_all(self._fd, data)
        except OSError as err:
            self.fail(err)
            return
        self.good_size += len(data)

    def close(self, summary: dict[str, Any]) -> None:
        """Write the closing summary, sync and close (nothing if a write failed before)."""
        try:
            self.record(RecordType.SUMMARY, encode_json(summary))
            if self._fd is not None:
                os.fsync(self._fd)
        finally:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None

    def fail(self, err: OSError) -> None:
        """Cut the file back to its last whole frame, close it, keep one clear line."""
        assert self._fd is not None
        try:
            os.ftruncate(self._fd, self.good_size)
        except OSError:
            log.debug("could not cut %s back to %d bytes", self.path, self.good_size)
        os.close(self._fd)
        self._fd = None
        what = "disk full" if err.errno in (errno.ENOSPC, errno.EDQUOT) else err.strerror
        self.error = TraceFileError(
            f"{what} writing {self.path}: recording stopped; the {self.events_written} events "
            "written before are readable (free space and record again)"
        )
        self.error.__cause__ = err


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
