"""The trace reader on hostile input: it ends with records or TraceFileError, never a crash."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np
import zstandard
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tracer.errors import TraceFileError
from tracer.events import EVENT_DTYPE, Point
from tracer.source import SourceInfo
from tracer.tracefile import EventChunk, ReplaySource, TraceHeader, TraceWriter, open_trace
from tracer.tracefile.format import (
    MAGIC,
    PREAMBLE,
    SCHEMA_VERSION,
    RecordType,
    decode_events,
    encode_events,
    encode_json,
    frame,
)
from tracer.tracefile.synthetic import mesh_events

FUZZ = settings(
    max_examples=300,
    deadline=2000,
    database=None,  # leave no .hypothesis directory behind
    suppress_health_check=[HealthCheck.too_slow],
)


def _valid_trace() -> bytes:
    with tempfile.TemporaryDirectory(prefix="swt-fuzz-") as d:
        path = Path(d) / "valid.swt"
        h = TraceHeader.now(SourceInfo("core", "k", True))
        with TraceWriter(path, h, chunk_events=64) as w:
            w.topology(1, {"version": 1, "changes": []})
            w.events(mesh_events(8))
            w.lost(2)
        return path.read_bytes()


VALID = _valid_trace()
PREFIX = PREAMBLE.pack(MAGIC, SCHEMA_VERSION, 0) + frame(
    RecordType.HEADER,
    zstandard.ZstdCompressor().compress(
        encode_json(TraceHeader.now(SourceInfo("core", "k", True)).to_json())
    ),
)


def _read_all(data: bytes) -> int:
    """Open and read a file made of `data`: records read, or -1 for a clean TraceFileError."""
    with tempfile.TemporaryDirectory(prefix="swt-fuzz-") as d:
        path = Path(d) / "fuzz.swt"
        path.write_bytes(data)
        return _read_file(path)


def _read_file(path: Path) -> int:
    try:
        with open_trace(path) as r:
            n = sum(1 for _ in r)
        with ReplaySource(path) as src:
            while not src.finished:
                src.poll(0)
        return n
    except TraceFileError as err:
        assert "\n" not in str(err)
        return -1


@FUZZ
@given(st.binary(max_size=4096))
def test_arbitrary_bytes(data: bytes) -> None:
    _read_all(data)
    _read_all(MAGIC + data)


@FUZZ
@given(st.binary(max_size=4096))
def test_arbitrary_body_after_a_valid_header(data: bytes) -> None:
    assert _read_all(PREFIX + data) >= 0


@FUZZ
@given(st.data())
def test_mutated_valid_file(data: st.DataObject) -> None:
    buf = bytearray(VALID)
    for _ in range(data.draw(st.integers(1, 8))):
        op = data.draw(st.sampled_from(["flip", "cut", "insert", "delete"]))
        pos = data.draw(st.integers(0, max(len(buf) - 1, 0)))
        if op == "flip" and buf:
            buf[pos] ^= data.draw(st.integers(1, 255))
        elif op == "cut":
            del buf[pos:]
        elif op == "insert":
            buf[pos:pos] = data.draw(st.binary(min_size=1, max_size=64))
        elif buf:
            del buf[pos : pos + data.draw(st.integers(1, 64))]
    _read_all(bytes(buf))


_PAYLOADS = st.one_of(
    st.binary(max_size=512),
    st.binary(max_size=512).map(zstandard.ZstdCompressor().compress),
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=8),
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
        max_leaves=12,
    ).map(lambda v: zstandard.ZstdCompressor().compress(json.dumps(v).encode())),
)


@FUZZ
@given(st.lists(st.tuples(st.integers(0, 255), _PAYLOADS), max_size=6))
def test_checksummed_frames_with_hostile_payloads(frames: list[tuple[int, bytes]]) -> None:
    # Valid framing and CRCs around garbage: every decoder must refuse it cleanly.
    body = b"".join(frame(kind, payload) for kind, payload in frames)  # type: ignore[arg-type]
    assert _read_all(PREFIX + body) >= 0


@FUZZ
@given(st.binary(max_size=2048))
def test_hostile_header_record(payload: bytes) -> None:
    for p in (payload, zstandard.ZstdCompressor().compress(payload)):
        data = PREAMBLE.pack(MAGIC, SCHEMA_VERSION, 0) + frame(RecordType.HEADER, p)
        assert _read_all(data) in (-1, 0)


@FUZZ
# Up to 90 events: Hypothesis draws from an 8 KiB buffer and fails health checks beyond it.
@given(st.integers(0, 90).flatmap(lambda n: st.binary(min_size=n * 80, max_size=n * 80)))
def test_any_events_round_trip_exactly(raw: bytes) -> None:
    events = np.frombuffer(raw, dtype=EVENT_DTYPE)
    assert decode_events(encode_events(events).tobytes()).tobytes() == raw
    # The file keeps every event a reader can use: a known point, a time within int64.
    usable = events.copy()
    usable["point"] = usable["point"] % len(Point) + 1
    usable["ts_ns"] >>= 1
    with tempfile.TemporaryDirectory(prefix="swt-fuzz-") as d:
        path = Path(d) / "rt.swt"
        with TraceWriter(path, TraceHeader.now(SourceInfo("core", "k", True))) as w:
            w.events(usable)
        with open_trace(path) as r:
            got = [rec.events for rec in r if isinstance(rec, EventChunk)]
            assert r.complete and not r.damages
    assert b"".join(g.tobytes() for g in got) == usable.tobytes()
