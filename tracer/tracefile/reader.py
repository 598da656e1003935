"""Trace reader: validates every frame and field; damage is skipped and reported, not fatal."""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np
import zstandard

from tracer.errors import TraceFileError
from tracer.events import EVENT_SIZE, READABLE_EVENT_VERSIONS, Point
from tracer.tracefile import validate
from tracer.tracefile.format import (
    FRAME,
    MAX_TOPOLOGY_BYTES,
    PREAMBLE,
    RecordType,
    TraceHeader,
    check_preamble,
    content_size,
    decode_events,
    decompress,
    max_payload,
)
from tracer.tracefile.frame_scan import Damage, FrameScanner

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


@dataclass(frozen=True, slots=True)
class TraceDamage:
    """A part of the file that could not be used; reading goes on after it."""

    offset: int  # where the damage starts
    skipped: int  # bytes left out (0: a record was read, but only in part)
    reason: str
    resumed: bool  # an intact record follows (False: the rest of the file is lost)

    def __str__(self) -> str:
        where = f"{self.reason} at byte {self.offset}"
        if not self.skipped:
            return where
        if self.resumed:
            return f"{where}: skipped {self.skipped} bytes to the next intact record"
        return f"{where}: skipped its last {self.skipped} bytes"

    def to_json(self) -> dict[str, Any]:
        return {"offset": self.offset, "skipped_bytes": self.skipped, "reason": self.reason}


Record = EventChunk | TopologyRecord | LostRecord | TraceSummary | TraceDamage

# Consumers get event arrays of at most this many events (views into one decoded chunk).
YIELD_EVENTS = 1 << 16
MAX_DAMAGES_KEPT = 100
_KNOWN_POINTS = np.array(sorted(int(p) for p in Point), dtype=np.uint8)


class TraceReader:
    """An open trace: `.header`, then iterate to get its records in file order.

    Damage does not end the stream: a TraceDamage record says what was skipped and reading
    resumes at the next intact frame. `.damages` lists them after iteration.
    """

    def __init__(
        self, path: str | os.PathLike[str], *, strict: bool = False, report: bool = True
    ) -> None:
        self.path = Path(path)
        self.strict = strict
        self.report = report  # log the damage as one warning line when iteration ends
        self.damages: list[TraceDamage] = []  # the first MAX_DAMAGES_KEPT of them
        self.damaged_parts = 0  # all of them
        self.skipped_bytes = 0
        self._last_damage: TraceDamage | None = None
        self.complete = False  # a closing summary was read
        self._fd = open_regular(self.path, "trace")
        self._frames = FrameScanner(self._fd)
        try:
            self.header = self._read_header()
        except BaseException:
            self.close()
            raise

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
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    @property
    def damage(self) -> TraceFileError | None:
        """All damage found by the last iteration, as one line; None for an intact file."""
        if not self.damages:
            return None
        line = f"{self.path} {self.damages[0]}"
        if self.damaged_parts > 1:
            line += (
                f" (and {self.damaged_parts - 1} more damaged parts; "
                f"{self.skipped_bytes} bytes skipped)"
            )
        return TraceFileError(line)

    def damage_json(self) -> dict[str, Any]:
        """The damage found by the last iteration, for JSON output."""
        return {
            "damage": [d.to_json() for d in self.damages],
            "damaged_parts": self.damaged_parts,
            "skipped_bytes": self.skipped_bytes,
        }

    def _read_header(self) -> TraceHeader:
        schema = check_preamble(os.pread(self._fd, PREAMBLE.size, 0), str(self.path))
        try:
            kind, payload = self._frames.frame(PREAMBLE.size)
            if kind != RecordType.HEADER:
                raise Damage("first record is not the header")
            raw = decompress(payload, max_payload(kind))
            header = TraceHeader.from_json(validate.loads(raw))
        except EOFError as err:
            raise TraceFileError(f"{self.path} is truncated inside its header") from err
        except (Damage, zstandard.ZstdError, ValueError, RecursionError) as err:
            raise TraceFileError(
                f"{self.path}: header damaged ({err}): the file is corrupt"
            ) from err
        self._body = PREAMBLE.size + FRAME.size + len(payload)
        if header.schema != schema:
            raise TraceFileError(
                f"{self.path}: header damaged (it says trace schema {header.schema}, the "
                f"signature {schema}): the file is corrupt"
            )
        if header.event_version not in READABLE_EVENT_VERSIONS or header.event_size != EVENT_SIZE:
            raise TraceFileError(
                f"{self.path} holds events of layout version {header.event_version} "
                f"({header.event_size} bytes); this swarmtrace reads versions "
                f"{', '.join(map(str, READABLE_EVENT_VERSIONS))} ({EVENT_SIZE} bytes): read it "
                "with the swarmtrace that wrote it"
            )
        return header

    def _scan(self, wanted: frozenset[int]) -> Iterator[Record]:
        """Records of the wanted types and every damage, in file order."""
        pos, topology_bytes = self._body, 0
        self._end = pos  # end of the last intact frame
        self._frames.start_scan()
        while True:
            try:
                kind, payload = self._frames.frame(pos)
            except EOFError:
                return
            except Damage as why:
                nxt = self._frames.next_intact(pos + 1)
                end = os.fstat(self._fd).st_size if nxt is None else nxt
                yield TraceDamage(pos, end - pos, str(why), nxt is not None)
                if nxt is None:
                    return
                pos = nxt
                continue
            at, pos = pos, pos + FRAME.size + len(payload)
            self._end = pos
            if kind not in wanted:
                continue  # a record type from a newer writer of the same schema: skip it
            try:
                if kind == RecordType.TOPOLOGY:
                    topology_bytes += max(_content_size(payload), 0)
                    if topology_bytes > MAX_TOPOLOGY_BYTES:
                        raise Damage(
                            f"damaged (names beyond {MAX_TOPOLOGY_BYTES >> 20} MiB in one file)"
                        )
                yield from _decode(kind, payload, at)
            except Damage as why:
                yield TraceDamage(at, pos - at, f"{why}: skipped this record", True)
                continue
            if kind == RecordType.SUMMARY:
                return  # the writer's last record

    def __iter__(self) -> Iterator[Record]:
        self.damages, self.complete = [], False
        self.damaged_parts = self.skipped_bytes = 0
        self._last_damage = None
        for record in self._scan(_BODY_TYPES):
            if isinstance(record, TraceDamage):
                self._note(record)
            yield record
            if isinstance(record, TraceSummary):
                self.complete = True
        size = os.fstat(self._fd).st_size
        if self.complete and size > self._end:
            yield self._note(
                TraceDamage(self._end, size - self._end, "data after the closing summary", False)
            )
        elif not self.complete and (self._last_damage is None or self._last_damage.resumed):
            yield self._note(
                TraceDamage(
                    size,
                    0,
                    "ends without a closing summary (recorder killed or still running): "
                    "read up to the recorder's last flush",
                    False,
                )
            )
        if self.damages and self.report:
            log.warning("%s", self.damage)

    def _note(self, damage: TraceDamage) -> TraceDamage:
        if self.strict:
            raise TraceFileError(f"{self.path} {damage}")
        if len(self.damages) < MAX_DAMAGES_KEPT:  # the rest only count: bounded memory
            self.damages.append(damage)
        self.damaged_parts += 1
        self.skipped_bytes += damage.skipped
        self._last_damage = damage
        return damage

    def topology(self) -> list[TopologyRecord]:
        """Only the topology records (event payloads are checked, not decoded); silent on
        damage: iteration reports it."""
        wanted = frozenset({RecordType.TOPOLOGY})
        return [r for r in self._scan(wanted) if isinstance(r, TopologyRecord)]

    def events(self) -> Iterator[np.ndarray]:
        """Only the event arrays, in order."""
        for rec in self:
            if isinstance(rec, EventChunk):
                yield rec.events


_BODY_TYPES = frozenset(
    {RecordType.TOPOLOGY, RecordType.EVENTS, RecordType.LOST, RecordType.SUMMARY}
)


def open_regular(path: Path, what: str) -> int:
    """A read-only fd on a regular file; TraceFileError (one line) for anything else.

    O_NONBLOCK: opening a FIFO must not wait for a writer (it is refused right after).
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except IsADirectoryError as err:
        raise TraceFileError(f"{path} is a directory, not a {what} file") from err
    except OSError as err:
        raise TraceFileError(f"cannot open {what} {path}: {err.strerror}") from err
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        kind = (
            "a directory"
            if stat.S_ISDIR(mode)
            else "a pipe"
            if stat.S_ISFIFO(mode)
            else "a device"
            if stat.S_ISCHR(mode) or stat.S_ISBLK(mode)
            else "not a regular file"
        )
        raise TraceFileError(
            f"{path} is {kind}, not a {what} file: save it to a file first and give that"
        )
    os.set_blocking(fd, True)
    return fd


def _content_size(payload: bytes) -> int:
    try:
        return content_size(payload)
    except zstandard.ZstdError as err:
        raise Damage(f"damaged (not a zstd frame: {err})") from err


def _decode(kind: int, payload: bytes, offset: int) -> Iterator[Record]:
    try:
        raw = decompress(payload, max_payload(kind))
        if kind == RecordType.EVENTS:
            yield from _event_chunks(decode_events(raw), offset)
            return
        d = validate.obj(validate.loads(raw), "record")
        if kind == RecordType.TOPOLOGY:
            kind_name = validate.text(d, "kind")
            if kind_name not in ("snapshot", "change"):
                raise ValueError(f"unknown topology record kind {kind_name!r}")
            validate.names_log(d.get("data"), snapshot=kind_name == "snapshot")
            ts = validate.integer(d, "ts_ns", 0, validate.NS_MAX)
            yield TopologyRecord(ts, kind_name, d["data"])
        elif kind == RecordType.LOST:
            yield LostRecord(
                validate.integer(d, "ts_ns", 0, validate.NS_MAX), validate.integer(d, "total")
            )
        else:
            yield TraceSummary(
                reason=validate.text(d, "reason"),
                events=validate.integer(d, "events"),
                lost=validate.integer(d, "lost"),
                topology_records=validate.integer(d, "topology_records"),
                first_ts_ns=validate.integer(d, "first_ts_ns", 0, validate.NS_MAX),
                last_ts_ns=validate.integer(d, "last_ts_ns", 0, validate.NS_MAX),
                end_wall_ns=validate.integer(d, "end_wall_ns", 0, validate.NS_MAX),
            )
    except (zstandard.ZstdError, ValueError, KeyError, TypeError, RecursionError) as err:
        # UnicodeDecodeError and JSONDecodeError are ValueErrors.
        raise Damage(f"damaged ({RecordType(kind).name.lower()} record: {err})") from err


def _event_chunks(events: np.ndarray, offset: int) -> Iterator[Record]:
    """The chunk in bounded slices, without events no reader can place in time or kind."""
    usable = np.isin(events["point"], _KNOWN_POINTS) & (events["ts_ns"] <= validate.NS_MAX)
    bad = len(events) - int(np.count_nonzero(usable))
    if bad:
        events = events[usable]
    for start in range(0, len(events), YIELD_EVENTS):
        yield EventChunk(events[start : start + YIELD_EVENTS])
    if bad:
        yield TraceDamage(
            offset,
            0,
            f"{bad} events with an unknown point (written by a newer swarmtrace?) or an "
            "impossible time were left out of the event record",
            True,
        )


def open_trace(
    path: str | os.PathLike[str], *, strict: bool = False, report: bool = True
) -> TraceReader:
    """Open a trace; TraceFileError (one line) if it is not a readable trace of this version.

    strict=False: damage after the header is skipped, listed in .damages and logged as one
    warning line; strict=True: it raises TraceFileError; report=False: no warning.
    """
    return TraceReader(path, strict=strict, report=report)
