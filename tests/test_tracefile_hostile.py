"""Issue 13: crafted and damaged traces, odd input and output paths, extreme numbers.

Each defect of the issue has a test here that reproduced it. Every reader entry point runs as
the user runs it (a subprocess), and must end with output or one line, a documented exit
status, no traceback and no hang.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import IO, Any

import numpy as np
import pytest
import zstandard
from measured_run import PYTHON, Run, run_measured

from tracer.errors import EXIT_TRACE_DAMAGED, OutputError, TraceFileError
from tracer.events import EVENT_SIZE, EVENT_VERSION, Point
from tracer.source import SourceInfo
from tracer.tracefile import TraceHeader, TraceWriter
from tracer.tracefile.format import (
    CHUNK,
    CODING_COLUMNS,
    FRAME,
    MAGIC,
    PREAMBLE,
    SCHEMA_VERSION,
    RecordType,
    encode_events,
    frame,
)
from tracer.tracefile.synthetic import NETNS_HOST, mesh_events

EXIT_UNREADABLE = TraceFileError.exit_code
EXIT_OUTPUT = OutputError.exit_code
EXIT_USAGE = 2
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


def swarmtrace(*args: str | Path, timeout: float = 60, stdout: IO[Any] | None = None) -> Run:
    """The CLI as a user runs it; its wall time and peak RSS."""
    return run_measured([str(PYTHON), "-m", "tracer", *map(str, args)], timeout, stdout)


def assert_one_line(run: Run, status: int, *words: str) -> None:
    assert "Traceback" not in run.stderr, run.stderr
    assert run.returncode == status, (run.returncode, run.stderr)
    assert run.stderr.count("\n") == 1, run.stderr
    for word in words:
        assert word in run.stderr, run.stderr


def zc(raw: bytes) -> bytes:
    return zstandard.ZstdCompressor().compress(raw)


def good_header(**changes: Any) -> dict[str, Any]:
    return {**TraceHeader.now(SourceInfo("core", "6.18.0-test", True)).to_json(), **changes}


def craft(
    path: Path,
    records: Iterable[tuple[int, bytes]] = (),
    *,
    header: dict[str, Any] | bytes | None = None,
    preamble: bytes | None = None,
) -> Path:
    """A trace with valid framing and checksums around whatever the records say."""
    head = header if isinstance(header, bytes) else json.dumps(header or good_header()).encode()
    data = preamble if preamble is not None else PREAMBLE.pack(MAGIC, SCHEMA_VERSION, 0)
    data += frame(RecordType.HEADER, zc(head))
    for kind, raw in records:
        data += frame(kind, zc(raw))  # type: ignore[arg-type]
    path.write_bytes(data)
    return path


def events_record(events: np.ndarray) -> tuple[int, bytes]:
    return RecordType.EVENTS, encode_events(events).tobytes()


def summary_record(**changes: Any) -> tuple[int, bytes]:
    body = {
        "reason": "complete", "events": 0, "lost": 0, "topology_records": 0,
        "first_ts_ns": 0, "last_ts_ns": 0, "end_wall_ns": 1, **changes,
    }
    return RecordType.SUMMARY, json.dumps(body).encode()


def topology_record(data: Any, kind: str = "snapshot") -> tuple[int, bytes]:
    return RecordType.TOPOLOGY, json.dumps({"ts_ns": 1, "kind": kind, "data": data}).encode()


def names_log(*changes: dict[str, Any]) -> dict[str, Any]:
    return {"version": 1, "clock": "CLOCK_MONOTONIC", "count": len(changes),
            "changes": list(changes)}


def netns_change(value: Any) -> dict[str, Any]:
    return {"t": 1, "src": "netns", "rank": 2, "kind": "netns", "key": NETNS_HOST,
            "value": value}


READERS = ("replay", "info", "info --json", "export --json", "export --pcapng")


def read_everywhere(path: Path, tmp: Path) -> dict[str, Run]:
    """The trace through every reader entry point."""
    runs = {}
    for reader in READERS:
        cmd, *opt = reader.split()
        if cmd == "replay":
            args: list[str | Path] = ["replay", path, "--json"]
        elif cmd == "info":
            args = ["info", path, *opt]
        elif opt == ["--json"]:
            args = ["export", path, "--json", "-"]
        else:
            args = ["export", path, "--pcapng", tmp / "out.pcapng"]
        runs[reader] = swarmtrace(*args)
    return runs


def assert_damaged_everywhere(path: Path, tmp: Path, *words: str) -> dict[str, Run]:
    runs = read_everywhere(path, tmp)
    for reader, run in runs.items():
        assert "Traceback" not in run.stderr, (reader, run.stderr)
        assert run.returncode == EXIT_TRACE_DAMAGED, (reader, run.returncode, run.stderr)
        assert run.stderr.count("swarmtrace: ") >= 1, (reader, run.stderr)
        warnings = [x for x in run.stderr.splitlines() if not x.startswith("swarmtrace: wrote ")]
        assert len(warnings) == 1, (reader, run.stderr)
        for word in words:
            assert word in warnings[0], (reader, run.stderr)
    return runs


def assert_refused_everywhere(path: Path, tmp: Path, *words: str) -> None:
    for reader, run in read_everywhere(path, tmp).items():
        assert "Traceback" not in run.stderr, (reader, run.stderr)
        assert run.returncode == EXIT_UNREADABLE, (reader, run.returncode, run.stderr)
        assert run.stderr.count("\n") == 1, (reader, run.stderr)
        for word in words:
            assert word in run.stderr, (reader, run.stderr)


# --- defect 1: values that crashed a reader although every checksum was valid ---------------


def test_unknown_event_point_is_left_out_and_said(tmp_path: Path) -> None:
    events = mesh_events(3)
    events["point"][5] = 200  # a point a newer writer may add
    path = craft(tmp_path / "point.swt", [events_record(events), summary_record()])
    runs = assert_damaged_everywhere(path, tmp_path, "1 events with an unknown point")
    lines = [json.loads(x) for x in runs["export --json"].stdout.splitlines()]
    assert sum(x["type"] == "event" for x in lines) == len(events) - 1
    assert [x["type"] for x in lines][-2:] == ["damage", "summary"]
    assert json.loads(runs["info --json"].stdout)["points"].get("200") is None


@pytest.mark.parametrize("number", ["Infinity", "-Infinity", "NaN", "1e999"])
@pytest.mark.parametrize("where", ["header", "topology", "lost", "summary"])
def test_non_finite_numbers_anywhere(tmp_path: Path, where: str, number: str) -> None:
    path = tmp_path / "inf.swt"
    if where == "header":
        head = json.dumps(good_header()).replace('"kernel": ', f'"x": {number}, "kernel": ')
        craft(path, [summary_record()], header=head.encode())
        assert_refused_everywhere(path, tmp_path, "header damaged")
        return
    body = {
        "topology": b'{"ts_ns": 1, "kind": "snapshot", "data": {"n": %s}}',
        "lost": b'{"ts_ns": 1, "total": %s}',
        "summary": b'{"reason": "complete", "events": %s}',
    }[where] % number.encode()
    kind = {"topology": RecordType.TOPOLOGY, "lost": RecordType.LOST, "summary": RecordType.SUMMARY}
    records = [(kind[where], body), events_record(mesh_events(2))]
    if where != "summary":
        records.append(summary_record())
    craft(path, records)
    assert_damaged_everywhere(path, tmp_path, f"{where} record")


@pytest.mark.parametrize(
    "data",
    [
        {"version": 1, "changes": 5},
        names_log(netns_change({"name": 5, "kind": "host"})),
        names_log(netns_change({"name": "host", "kind": "host", "node": ["x"]})),
        names_log(netns_change({"name": "host", "kind": "spaceship"})),
        names_log(netns_change("host")),
        names_log({**netns_change({"name": "host", "kind": "host"}), "key": "4026531840"}),
        names_log({**netns_change(None), "kind": "fwmarks", "key": [1]}),
        names_log({**netns_change(None), "t": -1}),
        names_log(5),
    ],
    ids=["changes-5", "name-5", "node-list", "kind-unknown", "value-str", "key-str",
         "key-short", "t-negative", "entry-int"],
)
def test_wrong_types_in_topology(tmp_path: Path, data: Any) -> None:
    path = craft(
        tmp_path / "topo.swt",
        [topology_record(data), events_record(mesh_events(2)), summary_record()],
    )
    runs = assert_damaged_everywhere(path, tmp_path, "topology record")
    assert len(runs["replay"].stdout.splitlines()) == 3  # both requests, then the damage line


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        ({"start_wall_ns": 10**30}, "start_wall_ns"),
        ({"start_wall_ns": -1}, "start_wall_ns"),
        ({"start_mono_ns": 2**64}, "start_mono_ns"),
        ({"start_wall_ns": 1.5}, "start_wall_ns"),
        ({"start_wall_ns": True}, "start_wall_ns"),
        ({"kernel": "x" * 10_000_000}, "implausible content size"),
        ({"kernel": "x" * 100_000}, "'kernel' is too long"),
        ({"kernel": {"a": 1}}, "kernel"),
        ({"nodes": "node1"}, "nodes"),
        ({"nodes": [1, 2]}, "nodes"),
        ({"filters": []}, "filters"),
        ({"schema": SCHEMA_VERSION + 1}, "trace schema"),
        ({"event_version": EVENT_VERSION + 1}, "layout version"),
        ({"event_size": EVENT_SIZE + 1}, "layout version"),
    ],
)
def test_header_fields_are_checked(tmp_path: Path, changes: dict[str, Any], words: str) -> None:
    path = craft(tmp_path / "head.swt", [summary_record()], header=good_header(**changes))
    assert_refused_everywhere(path, tmp_path, words)


def test_reserved_preamble_bytes_are_checked(tmp_path: Path) -> None:
    path = craft(tmp_path / "pre.swt", preamble=PREAMBLE.pack(MAGIC, SCHEMA_VERSION, 7))
    assert_refused_everywhere(path, tmp_path, "reserved")


def test_huge_times_in_events_are_left_out(tmp_path: Path) -> None:
    events = mesh_events(2)
    events["ts_ns"][-1] = np.uint64(2**64 - 1)  # info printed it as a date, pcapng packed it
    path = craft(tmp_path / "ts.swt", [events_record(events), summary_record()])
    assert_damaged_everywhere(path, tmp_path, "impossible time")


# --- defect 2: a zero-filled tail hung replay and export ------------------------------------


def recorded(path: Path, requests: int = 20, chunk_events: int = 64) -> np.ndarray:
    events = mesh_events(requests)
    with TraceWriter(path, TraceHeader.now(SourceInfo("core", "k", True)),
                     chunk_events=chunk_events) as w:
        w.events(events)
    return events


def test_zero_filled_tail_ends_quickly(tmp_path: Path) -> None:
    path = tmp_path / "tail.swt"
    recorded(path)
    end = path.stat().st_size
    os.truncate(path, 10 << 30)  # as `truncate -s 10G` does: a hole, read as zeros
    runs = assert_damaged_everywhere(path, tmp_path, f"at byte {end}", "last")
    for reader, run in runs.items():
        assert run.seconds < 20, (reader, run.seconds)
    assert len(runs["replay"].stdout.splitlines()) == 21  # 20 requests + the damage line


def test_zeros_written_inside_the_file_are_skipped(tmp_path: Path) -> None:
    # Zeros that are data, not a hole (a disk that lost a block): read past them.
    path = tmp_path / "zeros.swt"
    recorded(path)
    data = path.read_bytes()
    half = len(data) // 2
    path.write_bytes(data[:half] + bytes(3 << 20) + data[half:])
    runs = assert_damaged_everywhere(path, tmp_path, "skipped")
    info = json.loads(runs["info --json"].stdout)
    assert info["complete"] and len(info["damage"]) >= 1


# --- defect 3: one flipped bit lost everything after it -------------------------------------


def test_flipped_bit_in_first_chunk_keeps_the_rest(tmp_path: Path) -> None:
    path = tmp_path / "flip.swt"
    events = recorded(path, requests=24, chunk_events=192)  # 5 event chunks
    data = bytearray(path.read_bytes())
    first_chunk = PREAMBLE.size + 12 + int.from_bytes(data[PREAMBLE.size + 4 : PREAMBLE.size + 8],
                                                      "little")
    data[first_chunk + 40] ^= 0x08
    path.write_bytes(bytes(data))
    runs = assert_damaged_everywhere(path, tmp_path, "checksum", "next intact record")
    info = json.loads(runs["info --json"].stdout)
    assert info["events"] == len(events) - 192 and info["complete"]
    assert info["damage"][0]["offset"] == first_chunk


# --- defect 4: one small file that claims millions of events --------------------------------


def test_a_chunk_may_not_claim_millions_of_events(tmp_path: Path) -> None:
    count = 3_300_000
    raw = CHUNK.pack(count, EVENT_SIZE, EVENT_VERSION, CODING_COLUMNS) + bytes(count * EVENT_SIZE)
    path = craft(tmp_path / "bomb.swt", [(RecordType.EVENTS, raw), summary_record()])
    assert path.stat().st_size < 40_000
    runs = assert_damaged_everywhere(path, tmp_path, "implausible content size 264000012")
    for reader, run in runs.items():
        # A hang guard, not a speed goal: the bomb took 78 s before; now well under 1 s.
        assert run.seconds < 60, f"{reader} took {run.seconds:.0f} s on a 30 KB chunk bomb"
    rss = {reader: run.max_rss_kib >> 10 for reader, run in runs.items()}
    assert max(rss.values()) < 400, f"peak RSS MiB per reader: {rss}"


def test_the_largest_chunk_allowed_stays_bounded(tmp_path: Path) -> None:
    # 262144 identical events compress to a few KB: every reader streams them.
    from tracer.tracefile.format import MAX_CHUNK_EVENTS

    events = np.repeat(mesh_events(1)[:1], MAX_CHUNK_EVENTS)
    path = craft(tmp_path / "big.swt", [events_record(events), summary_record()])
    assert path.stat().st_size < 200_000
    for reader, run in read_everywhere(path, tmp_path).items():
        assert run.returncode == 0 and "Traceback" not in run.stderr, (reader, run.stderr)
        assert run.max_rss_kib < 600 << 10, (reader, run.max_rss_kib)


# --- defect 5: write errors ------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ("replay", "--sample", "--json"),
        ("info", "tracer/data/sample.swt"),
        ("info", "tracer/data/sample.swt", "--json"),
        ("export", "tracer/data/sample.swt", "--json", "-"),
        ("doctor", "--json"),
    ],
    ids=lambda a: " ".join(a[:2]),
)
def test_full_stdout_is_one_line(args: tuple[str, ...]) -> None:
    with open("/dev/full", "w") as full:
        run = swarmtrace(*args, stdout=full)
    assert_one_line(run, EXIT_OUTPUT, "No space left on device")


def test_full_disk_for_export_files_is_one_line() -> None:
    for fmt in ("--pcapng", "--json"):
        run = swarmtrace("export", "tracer/data/sample.swt", fmt, "/dev/full")
        assert_one_line(run, EXIT_OUTPUT, "/dev/full", "No space left on device")


# --- defect 6: extreme numbers ----------------------------------------------------------------


@pytest.mark.parametrize(
    "option",
    ["--speed inf", "--speed nan", "--speed 1e308", "--speed 0", "--speed -1", "--count -1",
     "--count 0", "--port -1", "--port 70000", "--port 1e23", "--port 0"],
)
def test_extreme_numbers_are_refused(option: str) -> None:
    run = swarmtrace("replay", "--sample", "--json", *option.split())
    assert_one_line(run, EXIT_USAGE, option.split()[0], "--help")
    assert run.stdout == ""


def test_count_limits_requests() -> None:
    run = swarmtrace("replay", "--sample", "--json", "--count", "2", "--speed", "1000000")
    assert run.returncode == 0 and len(run.stdout.splitlines()) == 2


# --- defect 7: output files -------------------------------------------------------------------


def test_export_keeps_out_until_the_new_content_is_complete(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    out.write_text("precious\n")
    bad = tmp_path / "bad.swt"
    bad.write_bytes(b"not a trace")
    for fmt in ("--json", "--pcapng"):
        run = swarmtrace("export", bad, fmt, out)
        assert_one_line(run, EXIT_UNREADABLE, "not a swarmtrace trace")
        assert out.read_text() == "precious\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.swt", "out.jsonl"]


def test_export_says_what_it_replaced(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    out.write_text("old\n")
    run = swarmtrace("export", "tracer/data/sample.swt", "--json", out)
    assert run.returncode == 0 and "replaced a file of 4 bytes" in run.stderr
    assert json.loads(out.read_text().splitlines()[0])["type"] == "header"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.jsonl"]


def test_export_refuses_a_symlink(tmp_path: Path) -> None:
    target = tmp_path / "owned-by-someone-else"
    target.write_text("keep\n")
    for fmt in ("--json", "--pcapng"):
        link = tmp_path / f"planted{fmt}"
        link.symlink_to(target)
        run = swarmtrace("export", "tracer/data/sample.swt", fmt, link)
        assert_one_line(run, EXIT_OUTPUT, "symbolic link")
        assert target.read_text() == "keep\n" and link.is_symlink()


def test_export_will_not_replace_its_own_input(tmp_path: Path) -> None:
    path = tmp_path / "in.swt"
    recorded(path)
    before = path.read_bytes()
    for fmt in ("--json", "--pcapng"):
        assert_one_line(swarmtrace("export", path, fmt, path), EXIT_OUTPUT, "being exported")
    assert path.read_bytes() == before


def test_export_to_a_device_writes_in_place() -> None:
    run = swarmtrace("export", "tracer/data/sample.swt", "--pcapng", "/dev/null")
    assert run.returncode == 0, run.stderr
    assert Path("/dev/null").is_char_device()


def test_recording_replaces_a_file_only_once_it_is_a_trace(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "rec.swt"
    path.write_text("old recording\n")
    with TraceWriter(path, TraceHeader.now(SourceInfo("core", "k", True))) as w:
        w.events(mesh_events(2))
    assert path.read_bytes().startswith(MAGIC)
    assert f"recording to {path} (replaced a file of 14 bytes)" in caplog.text
    link = tmp_path / "link.swt"
    link.symlink_to(tmp_path / "elsewhere.swt")
    with pytest.raises(TraceFileError, match="symbolic link"):
        TraceWriter(link, TraceHeader.now(SourceInfo("core", "k", True)))
    assert not (tmp_path / "elsewhere.swt").exists()


# --- defect 8: exit status and damage entries are checked by every test above; the TUI reads
# ReplaySource.damages.


def test_intact_trace_exits_zero_everywhere(tmp_path: Path) -> None:
    path = tmp_path / "ok.swt"
    recorded(path)
    for reader, run in read_everywhere(path, tmp_path).items():
        assert run.returncode == 0, (reader, run.stderr)
        assert '"type":"damage"' not in run.stdout, reader
    info = json.loads(swarmtrace("info", path, "--json").stdout)
    assert info["damage"] == [] and info["damage_summary"] is None


# --- defect 9: inputs that are not regular files ---------------------------------------------


def test_inputs_that_are_not_regular_files(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo.swt"
    os.mkfifo(fifo)  # nobody writes to it: opening it must not wait
    sock_path = tmp_path / "sock.swt"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(sock_path))
    try:
        cases = {
            tmp_path: "directory",
            fifo: "pipe",
            Path("/dev/zero"): "device",
            sock_path: "cannot open",
            tmp_path / "missing.swt": "cannot open",
        }
        for path, words in cases.items():
            for cmd in (["replay", path, "--json"], ["info", path],
                        ["export", path, "--json", "-"]):
                run = swarmtrace(*cmd, timeout=20)
                assert_one_line(run, EXIT_UNREADABLE, words)
    finally:
        sock.close()


def test_unreadable_input(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to run as user nobody")
    shared = Path(tempfile.mkdtemp(prefix="swt-unreadable-"))
    try:
        shared.chmod(0o755)
        path = shared / "secret.swt"
        recorded(path)
        path.chmod(0o600)  # root's, and nobody may read it
        cmd = ["runuser", "-u", "nobody", "--", str(PYTHON), "-m", "tracer", "info", str(path)]
        run = subprocess.run(cmd, capture_output=True, text=True, timeout=60, cwd="/")
        assert "Traceback" not in run.stderr
        assert run.returncode == EXIT_UNREADABLE and run.stderr.count("\n") == 1
        assert "Permission denied" in run.stderr
    finally:
        shutil.rmtree(shared)


def test_point_values_cover_the_enum() -> None:
    # The reader drops events whose point it does not know: make sure it knows all of them.
    from tracer.tracefile.reader import _KNOWN_POINTS

    assert sorted(_KNOWN_POINTS.tolist()) == sorted(int(p) for p in Point)


def test_tui_status_bar_names_the_damage(tmp_path: Path) -> None:
    from tracer.pipeline import Pipeline
    from tracer.tracefile import ReplaySource
    from tracer.tui.pipeline_feed import replay_feed

    path = tmp_path / "cut.swt"
    recorded(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 30])  # the summary is cut off
    with ReplaySource(path) as source:
        feed = replay_feed(Pipeline(source, None, ""))
        assert source.damages and source.damage is not None
    damage = feed.poll(0).stats.damage  # what the status bar shows in red
    assert "truncated" in damage, damage


def test_crafted_resync_candidates_cost_linear_time(tmp_path: Path) -> None:
    # Every 16 bytes a fake record header whose payload would run to the end of the file:
    # checking each of them in full was quadratic (7.6 s for 1 MiB, minutes for 8 MiB).
    units = 1 << 19
    fake = b"".join(
        FRAME.pack(RecordType.EVENTS, 0, 0, (units - i) * 16 - FRAME.size, 0) + ZSTD_MAGIC
        for i in range(units)
    )
    path = craft(tmp_path / "fakes.swt")
    path.write_bytes(path.read_bytes() + bytes(FRAME.size) + fake)
    runs = assert_damaged_everywhere(path, tmp_path, "not a record header")
    for reader, run in runs.items():
        assert run.seconds < 30, (reader, run.seconds)


def test_many_damaged_parts_are_counted_not_kept(tmp_path: Path) -> None:
    bad_lost = (RecordType.LOST, b'{"ts_ns": -1, "total": 0}')
    path = craft(tmp_path / "many.swt", [bad_lost] * 5000 + [summary_record()])
    run = swarmtrace("replay", path, "--json")
    assert run.returncode == EXIT_TRACE_DAMAGED and run.stderr.count("\n") == 1
    assert "4999 more damaged parts" in run.stderr
    line = json.loads(run.stdout.splitlines()[-1])
    assert line["damaged_parts"] == 5000 and len(line["damage"]) == 100
