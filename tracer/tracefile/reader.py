"""Trace reader: validates every frame; damage ends the stream with one warning, not a crash."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, BinaryIO

import numpy as np
import zstandard

from tracer.errors import TraceFileError
from tracer.tracefile.format import (
    FRAME,
    MAX_FRAME_BYTES,
    PREAMBLE,
    RecordType,
    TraceHeader,
    check_preamble,
    decode_events,
    decompress,
    frame_crc,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class EventChunk:
    events: np.ndarray  # EVENT_DTYPE


@dataclass(frozen=True, slots=True)
class TopologyRecord:
    """A topology snapshot or change as the enrichment layer handed it to the writer."""

    ts_ns: int
    kind: str  # "snapshot" | "change"
    data: Any


@dataclass(frozen=True, slots=True)
class LostRecord:
    ts_ns: int
    total: int  # cumulative events lost in the kernel up to ts_ns


@dataclass(frozen=True, slots=True)
class TraceSummary:
    reason: str  # "complete", "error"
    events: int
    lost: int
    topology_records: int
    first_ts_ns: int
    last_ts_ns: int
    end_wall_ns: int


Record = EventChunk | TopologyRecord | LostRecord | TraceSummary


class _Damage(Exception):
    """A frame that cannot be used; ends the readable part of the file."""


class TraceReader:
    """An open trace: `.header`, then iterate to get its records in file order."""

    def __init__(self, path: str | os.PathLike[str], *, strict: bool = False) -> None:
        self.path = Path(path)
        self.strict = strict
        # Set by iteration: why reading stopped early (None: read to the end).
        self.damage: TraceFileError | None = None
        self.complete = False  # a closing summary was read
        try:
            self._f: BinaryIO = open(self.path, "rb")  # noqa: SIM115 (closed by close())
        except IsADirectoryError as err:
            raise TraceFileError(f"{self.path} is a directory, not a trace file") from err
        except OSError as err:
            raise TraceFileError(f"cannot open trace {self.path}: {err.strerror}") from err
        try:
            self.header = self._read_header()
        except BaseException:
            self._f.close()
            raise
        self._body = self._f.tell()

    def __enter__(self) -> TraceReader:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._f.close()

    def _read_header(self) -> TraceHeader:
        check_preamble(self._f.read(PREAMBLE.size), str(self.path))
        try:
            kind, payload = self._read_frame()
            if kind != RecordType.HEADER:
                raise _Damage("first record is not the header")
            header = TraceHeader.from_json(json.loads(decompress(payload)))
        except EOFError as err:
            raise TraceFileError(f"{self.path} is truncated inside its header") from err
        except (_Damage, zstandard.ZstdError, ValueError, RecursionError) as err:
            raise TraceFileError(
                f"{self.path}: header damaged ({err}): the file is corrupt"
            ) from err
        if header.event_size <= 0:
            raise TraceFileError(f"{self.path}: header damaged (event size 0)")
        return header

    def _read_frame(self) -> tuple[int, bytes]:
        """(type, payload) of the next frame; EOFError at a clean end, _Damage else."""
        head = self._f.read(FRAME.size)
        if not head:
            raise EOFError
        if len(head) < FRAME.size:
            raise _Damage("truncated (partial record header)")
        kind, _, _, length, crc = FRAME.unpack(head)
        if length > MAX_FRAME_BYTES:
            raise _Damage("damaged (implausible record length)")
        payload = self._f.read(length)
        if len(payload) < length:
            raise _Damage("truncated (partial record)")
        if frame_crc(head[:8], payload) != crc:
            raise _Damage("damaged (checksum mismatch)")
        return kind, payload

    def __iter__(self) -> Iterator[Record]:
        self._f.seek(self._body)
        self.damage, self.complete = None, False
        count = 0
        while True:
            offset = self._f.tell()
            try:
                kind, payload = self._read_frame()
                record = _decode(kind, payload)
            except EOFError:
                break
            except _Damage as why:
                self._stop(f"is {why} at byte {offset}: read the {count} records before it")
                return
            if record is None:
                continue  # a record type from a newer writer of the same schema: skip it
            count += 1
            yield record
            if isinstance(record, TraceSummary):
                self.complete = True
                return
        self._stop(
            "ends without a closing summary (recorder killed or still running): "
            f"read its {count} records, up to the recorder's last flush"
        )

    def _stop(self, why: str) -> None:
        err = TraceFileError(f"{self.path} {why}")
        if self.strict:
            raise err
        self.damage = err
        log.warning("%s", err)

    def topology(self) -> list[TopologyRecord]:
        """Only the topology records, seeking over event payloads (fast); silent on damage."""
        out: list[TopologyRecord] = []
        size = os.fstat(self._f.fileno()).st_size
        self._f.seek(self._body)
        while True:
            head = self._f.read(FRAME.size)
            if len(head) < FRAME.size:
                return out
            kind, _, _, length, _ = FRAME.unpack(head)
            if kind != RecordType.TOPOLOGY:
                if kind == RecordType.SUMMARY or self._f.seek(length, os.SEEK_CUR) > size:
                    return out
                continue
            self._f.seek(-FRAME.size, os.SEEK_CUR)
            try:
                kind, payload = self._read_frame()
                record = _decode(kind, payload)
            except (EOFError, _Damage):
                return out
            if isinstance(record, TopologyRecord):
                out.append(record)

    def events(self) -> Iterator[np.ndarray]:
        """Only the event arrays, in order."""
        for rec in self:
            if isinstance(rec, EventChunk):
                yield rec.events


_BODY_TYPES = frozenset(
    {RecordType.TOPOLOGY, RecordType.EVENTS, RecordType.LOST, RecordType.SUMMARY}
)


def _decode(kind: int, payload: bytes) -> Record | None:
    if kind not in _BODY_TYPES:
        return None
    try:
        raw = decompress(payload)
        if kind == RecordType.EVENTS:
            return EventChunk(decode_events(raw))
        d = json.loads(raw)
        if kind == RecordType.TOPOLOGY:
            kind_name = str(d["kind"])
            if kind_name not in ("snapshot", "change"):
                raise ValueError(f"unknown topology record kind {kind_name!r}")
            return TopologyRecord(int(d["ts_ns"]), kind_name, d["data"])
        if kind == RecordType.LOST:
            return LostRecord(int(d["ts_ns"]), int(d["total"]))
        return TraceSummary(
            reason=str(d["reason"]),
            events=int(d["events"]),
            lost=int(d["lost"]),
            topology_records=int(d["topology_records"]),
            first_ts_ns=int(d["first_ts_ns"]),
            last_ts_ns=int(d["last_ts_ns"]),
            end_wall_ns=int(d["end_wall_ns"]),
        )
    except (zstandard.ZstdError, ValueError, KeyError, TypeError, RecursionError) as err:
        # UnicodeDecodeError and JSONDecodeError are ValueErrors.
        raise _Damage(f"damaged ({RecordType(kind).name.lower()} record: {err})") from err


def open_trace(path: str | os.PathLike[str], *, strict: bool = False) -> TraceReader:
    """Open a trace; TraceFileError (one line) if it is not a readable trace of this version.

    strict=False: damage after the header ends iteration with a logged warning (see .damage);
    strict=True: it raises TraceFileError.
    """
    return TraceReader(path, strict=strict)
