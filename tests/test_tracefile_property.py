"""Property: structurally valid but hostile traces (every checksum right, any field value)
end every reader entry point with output or one line: no traceback, no hang, bounded memory.

Each example is one subprocess that runs `replay --json`, `replay --no-tui`, `info`,
`info --json`, `export --json` and `export --pcapng` through the real CLI entry point; the
subprocess has a time limit and its peak RSS is measured (VmHWM).
"""

from __future__ import annotations

import json
import os
import tempfile
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import zstandard
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from measured_run import PYTHON, REPO, run_measured

from tracer.enrich.history import KINDS
from tracer.events import EVENT_DTYPE, EVENT_SIZE, EVENT_VERSION, Point
from tracer.sinks.text import TIMES_LEGEND
from tracer.source import SourceInfo
from tracer.tracefile import TraceHeader
from tracer.tracefile.format import (
    CHUNK,
    CODING_COLUMNS,
    MAGIC,
    PREAMBLE,
    SCHEMA_VERSION,
    RecordType,
    encode_events,
    frame,
)
from tracer.tracefile.synthetic import mesh_events

TIME_LIMIT_S = 60  # all five readers on one example (they take ~1 s unloaded)
RSS_LIMIT_KIB = 1 << 20  # 1 GiB
OK_STATUS = {0, 5, 7}  # read / refused in one line / read with damage

# Runs in the subprocess: every entry point, in-process, through tracer.cli.main.
_DRIVER = textwrap.dedent(
    """
    import contextlib, io, json, logging, sys, traceback
    from tracer.cli import main
    path, out = sys.argv[1], sys.argv[2]
    entry_points = {
        "replay": ["replay", path, "--json"],
        "replay text": ["replay", path, "--no-tui"],
        "info": ["info", path],
        "info --json": ["info", path, "--json"],
        "export --json": ["export", path, "--json", "-"],
        "export --pcapng": ["export", path, "--pcapng", out],
    }
    result = {}
    for name, argv in entry_points.items():
        sink, err = io.StringIO(), io.StringIO()
        logging.root.handlers.clear()  # main() sets logging up again, on this stderr
        try:
            with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(err):
                status = main(argv)
            result[name] = {"status": status, "stderr": err.getvalue()}
        except BaseException:
            result[name] = {"status": "crash", "stderr": err.getvalue() + traceback.format_exc()}
    print(json.dumps(result))
    """
)

# JSON values a hostile writer may put anywhere (json.dumps writes NaN and Infinity as such).
_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.sampled_from([0, 1, -1, 2**63 - 1, 2**63, 2**64 - 1, 2**64])
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12)
)
_ANY = st.recursive(
    _SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=10,
)


def _maybe(valid: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Mostly a valid value (so that parsing goes deeper), sometimes anything."""
    return st.one_of(valid, valid, valid, _ANY)


_NS = st.integers(0, 2**63 - 1)


@st.composite
def _header(draw: st.DrawFn) -> bytes:
    d = TraceHeader.now(SourceInfo("core", "6.18.0-test", True)).to_json()
    for key in list(d):
        if draw(st.integers(0, 9)) == 0:
            d[key] = draw(_ANY)
    if draw(st.integers(0, 9)) == 0:
        del d[draw(st.sampled_from(sorted(d)))]
    for key in ("start_wall_ns", "start_mono_ns"):
        if draw(st.booleans()):
            d[key] = draw(_NS)
    return json.dumps(d).encode()


@st.composite
def _events(draw: st.DrawFn) -> bytes:
    n = draw(st.integers(0, 40))
    raw = draw(st.binary(min_size=n * EVENT_SIZE, max_size=n * EVENT_SIZE))
    events = np.frombuffer(raw, dtype=EVENT_DTYPE).copy()
    if n and draw(st.booleans()):  # known points and sane times: decoding goes deeper
        events["point"] = events["point"] % len(Point) + 1
        events["ts_ns"] >>= draw(st.integers(1, 40))
    if n and draw(st.booleans()):
        events = np.concatenate([events, mesh_events(1)])
    body = encode_events(events).tobytes()
    if draw(st.integers(0, 4)) == 0:  # a chunk header that lies
        count = draw(st.integers(0, 2**32 - 1))
        size = draw(st.sampled_from([EVENT_SIZE, 0, EVENT_SIZE + 1]))
        version = draw(st.sampled_from([EVENT_VERSION, EVENT_VERSION + 1]))
        coding = draw(st.sampled_from([CODING_COLUMNS, 0, 7]))
        body = CHUNK.pack(count, size, version, coding) + body[CHUNK.size :]
    return body


@st.composite
def _names_entry(draw: st.DrawFn) -> Any:
    kind = draw(_maybe(st.sampled_from(KINDS)))
    if kind in ("netns", "vnis"):
        key: Any = draw(_maybe(st.integers(0, 2**64 - 1)))
    elif kind == "addrs":
        key = draw(_maybe(st.text(max_size=15)))
    else:
        key = draw(_maybe(st.tuples(st.text(max_size=6), st.integers(0, 2**32)).map(list)))
    value: Any = draw(
        _maybe(
            st.fixed_dictionaries(
                {"name": _maybe(st.text(max_size=20)), "kind": _maybe(st.sampled_from(
                    ["host", "ingress_sbox", "lb", "overlay", "container", "named", "task",
                     "vip", "sandbox"]))},
                optional={"node": _maybe(st.text(max_size=8)),
                          "task": _maybe(st.text(max_size=20)),
                          "service": _maybe(st.text(max_size=8))},
            )
            | st.text(max_size=12)
            | st.none()
        )
    )
    entry = {"t": draw(_maybe(_NS)), "src": draw(_maybe(st.text(max_size=8))),
             "rank": draw(_maybe(st.integers(0, 2))), "kind": kind, "key": key, "value": value}
    return draw(_maybe(st.just(entry)))


@st.composite
def _json_record(draw: st.DrawFn, kind: RecordType) -> bytes:
    if kind == RecordType.TOPOLOGY:
        data = {"version": draw(_maybe(st.just(1))),
                "changes": draw(_maybe(st.lists(_names_entry(), max_size=6)))}
        body: Any = {"ts_ns": draw(_maybe(_NS)),
                     "kind": draw(_maybe(st.sampled_from(["snapshot", "change"]))),
                     "data": draw(_maybe(st.just(data)))}
    elif kind == RecordType.LOST:
        body = {"ts_ns": draw(_maybe(_NS)), "total": draw(_maybe(st.integers(0, 2**64 - 1)))}
    else:
        body = {k: draw(_maybe(_NS)) for k in ("events", "lost", "topology_records",
                                               "first_ts_ns", "last_ts_ns", "end_wall_ns")}
        body["reason"] = draw(_maybe(st.sampled_from(["complete", "error"])))
    return json.dumps(draw(_maybe(st.just(body)))).encode()


@st.composite
def hostile_trace(draw: st.DrawFn) -> bytes:
    data = PREAMBLE.pack(MAGIC, SCHEMA_VERSION, 0)
    data += frame(RecordType.HEADER, zstandard.ZstdCompressor().compress(draw(_header())))
    for _ in range(draw(st.integers(0, 6))):
        kind = draw(st.sampled_from([*RecordType, 6, 200]))
        if kind == RecordType.EVENTS:
            raw = draw(_events())
        elif kind in (RecordType.TOPOLOGY, RecordType.LOST, RecordType.SUMMARY):
            raw = draw(_json_record(RecordType(kind)))
        else:
            raw = draw(st.binary(max_size=64))
        data += frame(kind, zstandard.ZstdCompressor().compress(raw))  # type: ignore[arg-type]
    if draw(st.integers(0, 5)) == 0:
        data += draw(st.binary(max_size=64))  # a torn tail
    return data


def _run_readers(trace: bytes) -> tuple[dict[str, Any], int]:
    """What each entry point did with `trace`, and the subprocess's peak RSS."""
    with tempfile.TemporaryDirectory(prefix="swt-prop-") as d:
        path = Path(d) / "hostile.swt"
        path.write_bytes(trace)
        cmd = [str(PYTHON), "-c", _DRIVER, str(path), str(Path(d) / "out.pcapng")]
        run = run_measured(cmd, TIME_LIMIT_S)
    assert run.returncode == 0, run.stdout + run.stderr
    return json.loads(run.stdout.splitlines()[-1]), run.max_rss_kib


PROPERTY = settings(
    max_examples=int(os.environ.get("SWARMTRACE_PROPERTY_EXAMPLES", "40")),
    deadline=None,  # the subprocess has its own time limit
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@PROPERTY
@given(hostile_trace())
def test_hostile_traces_end_cleanly_everywhere(trace: bytes) -> None:
    results, max_rss = _run_readers(trace)
    for name, r in results.items():
        assert r["status"] in OK_STATUS, (name, r)
        assert "Traceback" not in r["stderr"], (name, r["stderr"])
        lines = r["stderr"].splitlines()
        # Not complaints: what an export wrote, and the text output's legend of its times.
        complaints = [x for x in lines if not x.startswith("swarmtrace: wrote ")
                      and x != f"swarmtrace: {TIMES_LEGEND}"]
        assert len(complaints) <= 1, (name, r["stderr"])  # one line per bad file
        assert (r["status"] == 0) == (not complaints), (name, r)
    assert max_rss < RSS_LIMIT_KIB, max_rss


def test_driver_reads_an_intact_trace() -> None:
    # The property is only as good as its driver: an intact trace reads everywhere with 0.
    results, _ = _run_readers((REPO / "tracer" / "data" / "sample.swt").read_bytes())
    assert {name: r["status"] for name, r in results.items()} == dict.fromkeys(results, 0)
