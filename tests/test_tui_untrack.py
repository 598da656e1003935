"""The TUI keeps its requests off the cyclic GC: stored requests are untracked, which is only
safe while a request is a tree (no cycle through it), and they are still freed when dropped;
the rest of the app is frozen once, and full collections wait for a pause in the keys."""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import gc
import itertools
import time
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import pytest

from tracer.model import DnsQuery, DnsResult, Request, Resumed, Verdict
from tracer.source import SourceInfo
from tracer.tui.app import SwarmtraceApp
from tracer.tui.collector import FULL_EVERY_S, NO_AUTO_FULL, OVERDUE_S, QUIET_S, Collector
from tracer.tui.feed import FeedBatch, FeedStats
from tracer.tui.request_json import load_requests
from tracer.tui.store import RequestStore
from tracer.tui.untrack import untrack

FIXTURES = Path(__file__).parent / "fixtures"
SAMPLES = [FIXTURES / "requests_sample.json", FIXTURES / "requests_swarm.json"]


def with_every_part(requests: list[Request]) -> list[Request]:
    """The fixture's requests, and copies that also carry what the fixtures lack: a verdict, a
    DNS answer with earlier queries, a resumed connection, a missing node."""
    dns = DnsResult("vote", "A", "NOERROR", ("10.0.1.5",), (DnsQuery(1, "vote.lab", "NXDOMAIN"),))
    verdict = Verdict("node1", "ingress_sbox", "drop", "stale-backend", "evidence", "hint")
    extra = [
        dataclasses.replace(r, id=r.id + 1_000_000, verdict=verdict, dns=dns,
                            resumed=Resumed(r.id, r.start_ns), missing=["node2: no agent"])
        for r in requests
    ]
    return requests + extra


def held(obj: object) -> Iterator[object]:
    """The objects a request holds (not its classes, enum members or atoms): what untrack()
    must take off the collector, and what a cycle could run through."""
    for o in gc.get_referents(obj):
        if not isinstance(o, type | enum.Enum | str | int | float):
            yield o


def assert_tree(obj: object, path: tuple[int, ...] = ()) -> None:
    assert id(obj) not in path, f"a reference cycle through {type(obj).__name__}"
    for o in held(obj):
        assert_tree(o, (*path, id(obj)))


def reachable(obj: object) -> Iterator[object]:
    yield obj
    for o in held(obj):
        yield from reachable(o)


@pytest.mark.parametrize("path", SAMPLES, ids=lambda p: p.stem)
def test_requests_are_trees(path: Path) -> None:
    requests, _ = load_requests(path)
    assert any(h.before and h.after for r in requests for h in r.hops)  # rewrites are there
    for r in with_every_part(requests):
        assert_tree(r)


@pytest.mark.parametrize("path", SAMPLES, ids=lambda p: p.stem)
def test_untracked_requests_are_not_walked_by_a_collection(path: Path) -> None:
    requests = with_every_part(load_requests(path)[0])
    assert all(gc.is_tracked(r) for r in requests)
    for r in requests:
        untrack(r)
    tracked = [type(o).__name__ for r in requests for o in reachable(r) if gc.is_tracked(o)]
    assert tracked == []
    ids = {id(o) for o in gc.get_objects()}
    assert not any(id(r) in ids for r in requests)


def test_dropped_requests_are_still_freed() -> None:
    """Untracked objects are freed by reference counting alone: 10k more requests through a
    store that keeps 100 leave its memory as it was."""
    templates, _ = load_requests(SAMPLES[0])

    def fresh() -> Iterator[Request]:
        """New untracked requests, the only references to them the store's."""
        for i in range(20_000):
            t = templates[i % len(templates)]
            r = dataclasses.replace(t, id=i, hops=[dataclasses.replace(h) for h in t.hops])
            untrack(r)
            yield r

    store = RequestStore(capacity=100)
    requests = fresh()
    tracemalloc.start()
    try:
        store.apply(itertools.islice(requests, 10_000))  # the store's tables at their size
        before = tracemalloc.get_traced_memory()[0]
        store.apply(requests)
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert store.total == 100
    assert grown < 200_000, f"{grown} bytes kept for 10k requests dropped"  # kept: ~20 MB


class FreshFeed:
    """A live-like feed whose requests are new objects, tracked as the correlator makes them."""

    def __init__(self, requests: list[Request]) -> None:
        self._left = [dataclasses.replace(r, hops=list(r.hops)) for r in requests]

    def poll(self, timeout_s: float) -> FeedBatch:
        out, self._left = tuple(self._left), []
        return FeedBatch(FeedStats(SourceInfo("core", "6.18.0", True)), out)

    @property
    def finished(self) -> bool:
        return not self._left


def test_app_keeps_requests_off_the_collector_and_freezes_only_itself() -> None:
    """Stored requests untracked; what lives as long as the app frozen, full collections its
    own; the collector as it was after the app's exit."""
    requests, _ = load_requests(SAMPLES[0])
    before = gc.get_threshold()

    async def run() -> int:
        app = SwarmtraceApp(FreshFeed(requests))
        async with app.run_test(size=(100, 30)) as pilot:
            for _ in range(100):
                if gc.get_freeze_count() and app.state.store.total == len(requests):
                    break
                await pilot.pause(0.02)
            stored = list(app.state.store.window(0, len(requests)))
            assert len(stored) == len(requests)
            assert not any(gc.is_tracked(r) or gc.is_tracked(r.hops) for r in stored)
            assert gc.get_threshold()[2] == NO_AUTO_FULL
            return gc.get_freeze_count()

    assert asyncio.run(run()) > 10_000  # modules, classes, the screens
    assert gc.get_freeze_count() == 0 and gc.get_threshold() == before


def test_full_collections_wait_for_a_pause_in_the_keys() -> None:
    collected: list[int] = []

    def note(phase: str, info: dict[str, int]) -> None:
        if phase == "stop" and info["generation"] == 2:
            collected.append(1)

    collector = Collector()
    collector.start()
    gc.callbacks.append(note)
    try:
        now = time.monotonic()
        collector._last = now - FULL_EVERY_S
        collector.tick(input_at=now)  # a key just now: not yet
        assert not collected
        collector.tick(input_at=now - QUIET_S)
        assert len(collected) == 1
        collector.tick(input_at=now - QUIET_S)  # not due again
        collector.after_input_frame()
        assert len(collected) == 1
        collector._last = time.monotonic() - OVERDUE_S
        collector.tick(input_at=time.monotonic())  # keys without a pause: not from the timer
        assert len(collected) == 1
        collector.after_input_frame()  # but once a key's frame is shown
        assert len(collected) == 2
    finally:
        gc.callbacks.remove(note)
        collector.stop()
