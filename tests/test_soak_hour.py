"""Issue 13: `trace -w` for an hour under steady traffic (`scripts/test --soak -s
tests/test_soak_hour.py`; `--soak-minutes N` for a shorter run). Needs no lab lock: the
traffic runs through a private client/server netns pair with a DNAT, named after the test.

`--soak-rate R` sets the requests per second (10 by default; issue 16 asks for an hour at 1,000).
Every minute the tracer's RSS, open fds and BPF links, maps and programs are read from /proc.
Nothing may grow without bound: the last third of the run is compared with the first third,
with the tolerances below. Then the file must replay every request that was sent."""

from __future__ import annotations

import json
import os
import shutil
import signal
import statistics
import subprocess
import tempfile
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from live_trace import SWARMTRACE
from proc_sample import Sample, sample
from soak_pair import PUBLISHED_PORT, pair

pytestmark = [
    pytest.mark.root,
    pytest.mark.soak,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root: BPF and netns"),
    pytest.mark.skipif(not Path("/sys/kernel/btf/vmlinux").exists(), reason="kernel has no BTF"),
]

# Tolerances, last third against first third: memory may settle a little higher (allocator
# arenas, interned names, and what the tracer keeps on purpose, bounded by count: up to
# 16,384 finished connections, tracer/past_connections.py MAX_PAST, about 500 B each, and up
# to 65,536 decoded tuples, tracer/events.py _Memo.LIMIT, about 250 B each, 2.8 per request
# here). Measured with tracemalloc on a replay of this soak's recording: 1.2 KiB per request
# until both are full, after about 24,000 requests (40 minutes at 10 requests/s). A leak of
# 1 KiB per request (600 per minute at 10/s) would fail the RSS bound over an hour.
# At 1,000/s RSS also steps up and stays after a poll that read a backlog (the tracer held off
# the CPU by other work): the allocator keeps what the large batch took. That is bounded by
# the largest batch, not the run's length; tests/test_steady_memory.py checks that the objects
# kept do not grow with the requests.
RSS_GROWTH = 1.10
RSS_SLACK_KIB = 4096
CACHES_KIB = (16_384 * 500 + 65_536 * 250) // 1024
FD_SLACK = 2  # plain fds (files, sockets, pipes): a Docker or netns lookup may be open
LINKS_PER_NETNS = 3  # netfilter hooks: pre-routing, local-out, post-routing
NETNS_SLACK = 2  # netns made or removed by others between the tracer's scan and our sample


def _wait_ready(proc: subprocess.Popen[bytes], err: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while "tracing with" not in err.read_text(errors="replace"):
        if proc.poll() is not None:
            raise AssertionError(f"trace exited early: {err.read_text(errors='replace')}")
        if time.monotonic() > deadline:
            raise AssertionError(f"trace did not attach within {timeout:.0f} s")
        time.sleep(0.2)


def _thirds(samples: list[Sample]) -> tuple[list[Sample], list[Sample]]:
    n = max(len(samples) // 3, 1)
    return samples[:n], samples[-n:]


def _check_bounded(samples: list[Sample]) -> None:
    first, last = _thirds(samples)
    rss0 = statistics.median(s.rss_kib for s in first)
    rss1 = statistics.median(s.rss_kib for s in last)
    assert rss1 <= rss0 * RSS_GROWTH + RSS_SLACK_KIB + CACHES_KIB, \
        f"RSS grew: {rss0:.0f} -> {rss1:.0f} KiB (medians of the first and last third)"

    def plain(s: Sample) -> int:
        return s.fds - s.links - s.maps - s.progs

    assert max(map(plain, last)) <= max(map(plain, first)) + FD_SLACK, \
        f"fds grew: {[plain(s) for s in samples]}"
    assert {s.maps for s in samples} == {samples[0].maps}, [s.maps for s in samples]
    assert {s.progs for s in samples} == {samples[0].progs}, [s.progs for s in samples]

    def beyond_netns(s: Sample) -> int:  # links not accounted for by the machine's netns
        return s.links - LINKS_PER_NETNS * s.netns

    # Medians: a lab removed by other work just before a sample leaves the tracer holding
    # its links until the next rescan (8 netns at once: 24 links in one sample), whereas
    # links that are never let go raise every sample after them.
    assert statistics.median(map(beyond_netns, last)) <= (
        statistics.median(map(beyond_netns, first)) + LINKS_PER_NETNS * NETNS_SLACK), \
        f"links grew beyond the netns: {[(s.links, s.netns) for s in samples]}"


@pytest.fixture
def run_dir(request: pytest.FixtureRequest) -> Iterator[Path]:
    """Not tmp_path: pytest removes all but the last 3 session directories of a user, so
    other test runs during the hour would delete the trace being written. Kept on failure."""
    d = Path(tempfile.mkdtemp(prefix="swarmtrace-soak-hour-", dir="/var/tmp"))
    failed = request.session.testsfailed
    yield d
    if request.session.testsfailed == failed:
        shutil.rmtree(d)
    else:
        print(f"soak: hour: files kept in {d}")


@dataclass
class Tally:
    """What a stream of JSON requests held, counted as it is read: an hour at 1,000 requests/s
    is 3.6 M of them, too many to keep."""

    requests: int = 0
    ok: int = 0
    distinct: int = 0

    @classmethod
    def of(cls, lines: Iterable[str], entry: str) -> Tally:
        t, seen = cls(), set()
        for line in lines:
            if not line.startswith("{"):
                continue
            r = json.loads(line)
            if r["entry"] != entry:
                continue
            t.requests += 1
            t.ok += r["status"] == "ok"
            # A client port comes round again within the hour: a request is it and its start.
            seen.add(hash((r["client"], r["start_ns"])))
        t.distinct = len(seen)
        return t


def check_complete(replayed: Tally, live: Tally, answered: int, failed: int, lost: int) -> None:
    """Every request answered is in the file and was shown live, once, as ok. One the client
    gave up on (a loaded machine) may have sent nothing: it may be missing. So may one per
    event the kernel failed to put in the ring, which the tracer counted (`lost`): a few per
    million at any rate (README "Scale curve and loss point"; 159 of 14.4 M events in an hour
    at 1,000 requests/s took 30 requests with them)."""
    for got, what in ((replayed, "replayed"), (live, "shown live")):
        assert answered - lost <= got.requests <= answered + failed \
            and got.ok >= answered - lost, \
            f"{what}: {got.requests} requests ({got.ok} ok) for {answered} answered + " \
            f"{failed} failed, {lost} events lost"
    assert replayed.distinct == replayed.requests, replayed
    # What the file holds was shown live too, the last poll's requests at the stop included
    # (an hour's run lost 81 there before tracer/signals.interrupts_held). Up to 2 apart: a
    # retransmitted SYN can start a request at a time that differs between the two.
    assert replayed.requests - live.requests <= 2, \
        f"{replayed.requests} requests in the file, {live.requests} shown live"


def test_an_hour_of_recording(run_dir: Path, request: pytest.FixtureRequest) -> None:
    minutes: int = request.config.getoption("--soak-minutes")
    rate: float = request.config.getoption("--soak-rate")
    path, out, err = run_dir / "hour.swt", run_dir / "live.jsonl", run_dir / "trace.err"
    # Named and addressed after this run: two runs at once must not meet in a filter.
    with pair(f"soakhour{os.getpid()}", os.getpid() % 250 + 1) as p, out.open("wb") as out_f, \
            err.open("wb") as err_f:
        # Only our own flows (--port/--addr match either).
        flt = ("--filter", f"dst host {p.vip} and dst port {PUBLISHED_PORT}")
        tracer = subprocess.Popen(
            [*SWARMTRACE, "trace", "--json", *flt, "-w", str(path),
             "--timeout", str(minutes * 60 + 600)],
            stdout=out_f, stderr=err_f, stdin=subprocess.DEVNULL)
        try:
            _wait_ready(tracer, err)
            t0 = time.monotonic()
            samples = [sample(tracer.pid, 0.0)]
            sent = failed = 0
            for minute in range(1, minutes + 1):
                done, bad = p.flood(60, rate)
                sent, failed = sent + done, failed + bad
                assert tracer.poll() is None, err.read_text(errors="replace")
                s = sample(tracer.pid, time.monotonic() - t0)
                samples.append(s)
                print(f"soak: hour: minute {minute}: {s.to_json()} sent {sent}", flush=True)
        finally:
            if tracer.poll() is None:
                # SIGTERM, not SIGINT: a shell's background job starts with SIGINT ignored
                # (then Python has no KeyboardInterrupt either); the tracer takes both alike.
                tracer.send_signal(signal.SIGTERM)
            tracer.wait(120)
    (run_dir / "samples.json").write_text(json.dumps([s.to_json() for s in samples]))
    assert tracer.returncode == 0, err.read_text(errors="replace")

    t1 = time.monotonic()
    replay_out = run_dir / "replayed.jsonl"
    with replay_out.open("wb") as f:
        replay = subprocess.run([*SWARMTRACE, "replay", str(path), "--json", "--addr", p.vip],
                                stdout=f, stderr=subprocess.PIPE, text=True, timeout=3600)
    replay_s = time.monotonic() - t1
    assert replay.returncode == 0, replay.stderr
    with replay_out.open() as r, out.open() as o:
        replayed, live = Tally.of(r, p.target), Tally.of(o, p.target)
    info = json.loads(subprocess.run([*SWARMTRACE, "info", str(path), "--json"],
                                     capture_output=True, text=True, timeout=300).stdout)
    rss = [s.rss_kib for s in samples]
    print(f"soak: hour: {minutes} min at {rate:.0f} req/s: sent {sent} (+{failed} failed), "
          f"live {live.requests}, replayed {replayed.requests} in {replay_s:.0f} s; "
          f"{info['events']} events ({info['lost_events']} lost), {info['bytes']} bytes, "
          f"complete {info['complete']}; "
          f"RSS start {rss[0]} end {rss[-1]} max {max(rss)} KiB, peak (VmHWM) "
          f"{samples[-1].peak_kib} KiB; "
          f"fds {samples[0].fds}->{samples[-1].fds}, links {samples[0].links}->"
          f"{samples[-1].links}, maps {samples[0].maps}->{samples[-1].maps}, progs "
          f"{samples[0].progs}->{samples[-1].progs}, netns {samples[0].netns}->"
          f"{samples[-1].netns}")
    assert info["complete"]
    check_complete(replayed, live, sent, failed, info["lost_events"])
    _check_bounded(samples)
