"""The .swt trace file format: preamble, framing, record types, header and event chunk coding.

Layout: PREAMBLE (magic + schema version), then frames. Each frame is FRAME (type, length,
crc32 of the type/length fields and the payload) followed by its payload: one complete zstd
frame. Every frame decodes on its own, so a file cut anywhere (SIGKILL, full disk) is readable
up to its last complete frame. The first frame is the HEADER; a SUMMARY closes a finished file.
"""

from __future__ import annotations

import enum
import json
import os
import socket
import struct
import time
import zlib
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import zstandard

from tracer import __version__
from tracer.errors import TraceFileError
from tracer.events import EVENT_DTYPE, EVENT_SIZE, EVENT_VERSION, READABLE_EVENT_VERSIONS
from tracer.source import Filter, SourceInfo
from tracer.tracefile import validate

# PNG-style signature: a high byte, CR LF and ^Z catch text-mode transfers and `cat`-ed junk.
MAGIC = b"\x89SWT\r\n\x1a\n"
# Bump when a reader of the old version could not read the new files (framing, record payloads).
SCHEMA_VERSION = 1
PREAMBLE = struct.Struct("<8sHH")  # magic, schema version, reserved (0)
FRAME = struct.Struct("<BBHII")  # record type, reserved, reserved, payload length, crc32
# Bounds every allocation the reader makes from numbers found in a file: a frame as stored,
# and what its payload may claim once decompressed (a 30 KB frame can claim 300 MB).
MAX_FRAME_BYTES = 64 << 20
MAX_CHUNK_EVENTS = 1 << 18  # 4x the writer's chunks (tracer.tracefile.writer.CHUNK_EVENTS)
MAX_JSON_BYTES = {"topology": 16 << 20, "other": 1 << 20}
MAX_TOPOLOGY_BYTES = 32 << 20  # all topology records of one file together, decompressed

SUFFIX = ".swt"


class RecordType(enum.IntEnum):
    HEADER = 1
    TOPOLOGY = 2
    EVENTS = 3
    LOST = 4
    SUMMARY = 5


# Event chunk payload (before zstd): count, record size, EVENT_VERSION, coding; then the columns.
CHUNK = struct.Struct("<IHHI")
CODING_COLUMNS = 1  # one contiguous column per top-level field, ts_ns as deltas


@dataclass(frozen=True)
class TraceHeader:
    """What recorded the trace, where and when; the first record of every file."""

    kernel: str
    backend: str
    nodes: tuple[str, ...] = ()
    filters: Mapping[str, Any] = field(default_factory=dict)
    notes: tuple[str, ...] = ()
    # How the recorded node balanced load, labelled on LB hops at replay as live did it.
    lb_note: str = ""
    # The recording kernel's drop reason names by code (they differ between kernels).
    drop_reasons: tuple[str, ...] = ()
    hostname: str = ""
    # ts_ns of events is CLOCK_MONOTONIC: wall = ts_ns - start_mono_ns + start_wall_ns.
    start_wall_ns: int = 0
    start_mono_ns: int = 0
    schema: int = SCHEMA_VERSION
    tracer_version: str = __version__
    event_version: int = EVENT_VERSION
    event_size: int = EVENT_SIZE

    @classmethod
    def now(
        cls,
        info: SourceInfo,
        filters: Filter | None = None,
        nodes: tuple[str, ...] = (),
        notes: tuple[str, ...] = (),
        lb_note: str = "",
    ) -> TraceHeader:
        """A header for a recording that starts now from the source described by `info`."""
        wall, mono = time.time_ns(), time.monotonic_ns()
        return cls(
            kernel=info.kernel,
            backend=info.backend,
            nodes=tuple(nodes),
            filters=asdict(filters) if filters is not None else {},
            notes=tuple(info.notes) + tuple(notes),
            lb_note=lb_note,
            drop_reasons=tuple(info.drop_reasons),
            hostname=socket.gethostname(),
            start_wall_ns=wall,
            start_mono_ns=mono,
        )

    def wall_ns(self, ts_ns: int) -> int:
        """An event's monotonic ts_ns as nanoseconds since the Unix epoch."""
        return ts_ns - self.start_mono_ns + self.start_wall_ns

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["filters"] = dict(self.filters)
        return d

    @classmethod
    def from_json(cls, data: Any) -> TraceHeader:
        """The header as a file states it; ValueError naming the first field out of range."""
        d = validate.obj(data, "header")
        filters = validate.obj(d.get("filters", {}), "field 'filters'")
        return cls(
            kernel=validate.text(d, "kernel"),
            backend=validate.text(d, "backend"),
            nodes=validate.texts(d, "nodes"),
            filters=dict(filters),
            notes=validate.texts(d, "notes"),
            lb_note=validate.text(d, "lb_note", ""),
            drop_reasons=validate.texts(d, "drop_reasons"),
            hostname=validate.text(d, "hostname", ""),
            start_wall_ns=validate.integer(d, "start_wall_ns", 0, validate.NS_MAX),
            start_mono_ns=validate.integer(d, "start_mono_ns", 0, validate.NS_MAX),
            schema=validate.integer(d, "schema", 0, 0xFFFF),
            tracer_version=validate.text(d, "tracer_version", ""),
            event_version=validate.integer(d, "event_version", 0, 0xFFFF),
            event_size=validate.integer(d, "event_size", 0, 0xFFFF),
        )


def default_level() -> int:
    """zstd level: 3 keeps up with >1 M events/s on one core; SWARMTRACE_ZSTD_LEVEL overrides."""
    return int(os.environ.get("SWARMTRACE_ZSTD_LEVEL", "3"))


def frame(kind: int, payload: bytes) -> bytes:
    head = FRAME.pack(kind, 0, 0, len(payload), 0)[:8]
    crc = zlib.crc32(payload, zlib.crc32(head))
    return head + struct.pack("<I", crc) + payload


def frame_crc(head8: bytes, payload: bytes) -> int:
    return zlib.crc32(payload, zlib.crc32(head8))


def encode_json(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), sort_keys=True).encode()


# (name, offset, size) of each top-level field: one column each in an event chunk.
_COLUMNS = tuple(
    (name, int(EVENT_DTYPE.fields[name][1]), int(EVENT_DTYPE.fields[name][0].itemsize))  # type: ignore[index]
    for name in EVENT_DTYPE.names or ()
)


def encode_events(events: np.ndarray) -> np.ndarray:
    """Column-split, ts_ns delta-coded event records (zstd then finds repetition per field).

    Returns the raw chunk payload as a uint8 array (any buffer goes to zstd without a copy).
    """
    n = len(events)
    rows = np.ascontiguousarray(events).view(np.uint8).reshape(n, EVENT_SIZE)
    out = np.empty(CHUNK.size + n * EVENT_SIZE, dtype=np.uint8)
    out[: CHUNK.size] = np.frombuffer(
        CHUNK.pack(n, EVENT_SIZE, EVENT_VERSION, CODING_COLUMNS), dtype=np.uint8
    )
    pos = CHUNK.size
    for name, offset, size in _COLUMNS:
        col = out[pos : pos + n * size].reshape(n, size)
        if name == "ts_ns" and n:
            ts = events["ts_ns"]
            delta = np.empty(n, dtype=np.uint64)
            delta[0] = ts[0]
            np.subtract(ts[1:], ts[:-1], out=delta[1:])  # uint64: wraps, so any order works
            col[:] = delta.view(np.uint8).reshape(n, size)
        else:
            col[:] = rows[:, offset : offset + size]
        pos += n * size
    return out


def decode_events(raw: bytes) -> np.ndarray:
    """Inverse of encode_events; ValueError (with why) on anything that does not fit."""
    if len(raw) < CHUNK.size:
        raise ValueError("event chunk too short")
    count, size, version, coding = CHUNK.unpack_from(raw)
    if version not in READABLE_EVENT_VERSIONS or size != EVENT_SIZE:
        raise ValueError(
            f"events of layout version {version} ({size} bytes); this swarmtrace reads "
            f"version {EVENT_VERSION} ({EVENT_SIZE} bytes)"
        )
    if coding != CODING_COLUMNS:
        raise ValueError(f"unknown event coding {coding}")
    if count > MAX_CHUNK_EVENTS:
        raise ValueError(f"event chunk claims {count} events (at most {MAX_CHUNK_EVENTS})")
    if len(raw) != CHUNK.size + count * EVENT_SIZE:
        raise ValueError("event chunk length does not match its count")
    src = np.frombuffer(raw, dtype=np.uint8, offset=CHUNK.size)
    out = np.empty(count, dtype=EVENT_DTYPE)
    rows = out.view(np.uint8).reshape(count, EVENT_SIZE)
    pos = 0
    for _, offset, width in _COLUMNS:
        rows[:, offset : offset + width] = src[pos : pos + count * width].reshape(count, width)
        pos += count * width
    if count:
        out["ts_ns"] = np.cumsum(out["ts_ns"], dtype=np.uint64)
    return out


def max_payload(kind: int) -> int:
    """The most a record of this type may decompress to."""
    if kind == RecordType.EVENTS:
        return CHUNK.size + MAX_CHUNK_EVENTS * EVENT_SIZE
    return MAX_JSON_BYTES["topology" if kind == RecordType.TOPOLOGY else "other"]


def content_size(payload: bytes) -> int:
    """What a zstd frame says it decompresses to (-1 unknown); zstd.ZstdError if no frame."""
    return int(zstandard.frame_content_size(payload))


def decompress(payload: bytes, limit: int) -> bytes:
    """One zstd frame, refusing sizes beyond `limit` before allocating (zstd.ZstdError else)."""
    size = zstandard.frame_content_size(payload)
    if size < 0 or size > limit:
        raise zstandard.ZstdError(f"implausible content size {size}")
    return zstandard.ZstdDecompressor().decompress(payload, max_output_size=limit)


def check_preamble(data: bytes, name: str) -> int:
    """The schema version of a trace starting with `data`; TraceFileError (one line) unless
    this version reads it."""
    if not data:
        raise TraceFileError(f"{name} is empty: not a swarmtrace trace")
    if len(data) < PREAMBLE.size or not data.startswith(MAGIC):
        if MAGIC.startswith(data[: len(MAGIC)]):
            raise TraceFileError(f"{name} is truncated before its header: nothing to read")
        if data[:4] == MAGIC[:4] or data[1:4] == MAGIC[1:4]:
            raise TraceFileError(f"{name}: trace signature damaged: the file is corrupt")
        raise TraceFileError(
            f"{name} is not a swarmtrace trace (no .swt signature); record one with "
            "`swarmtrace trace -w FILE`"
        )
    _, schema, reserved = PREAMBLE.unpack_from(data)
    if schema > SCHEMA_VERSION:
        raise TraceFileError(
            f"{name} was written by a newer swarmtrace (trace schema {schema}; this one reads "
            f"up to {SCHEMA_VERSION}): upgrade swarmtrace to read it"
        )
    if schema < 1:
        raise TraceFileError(f"{name} has an unknown trace schema version {schema}: corrupt?")
    if reserved:
        raise TraceFileError(f"{name}: trace signature damaged (reserved bytes set): corrupt?")
    return int(schema)
