"""The pipeline sets no GC policy: the front end does (tests/fixtures/lab_mesh_vip.swt
replayed). `trace`, `replay` and the agent pace it with tracer.gc_pacing.paced_gc."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from pathlib import Path

import pytest

from tracer.gc_pacing import paced_gc
from tracer.pipeline import Pipeline
from tracer.tracefile.replay import ReplaySource
from tracer.tracefile.topology import trace_names

FIXTURE = Path(__file__).parent / "fixtures" / "lab_mesh_vip.swt"


@pytest.fixture
def default_gc() -> Iterator[tuple[int, int, int]]:
    before, enabled = gc.get_threshold(), gc.isenabled()
    gc.set_threshold(700, 10, 10)
    gc.enable()
    yield gc.get_threshold()
    gc.set_threshold(*before)
    if not enabled:
        gc.disable()


def test_the_pipeline_leaves_the_gc_alone(default_gc: tuple[int, int, int]) -> None:
    with ReplaySource(FIXTURE, batch_events=16) as src:
        pipe = Pipeline(src, trace_names(FIXTURE), src.header.lb_note)
        requests = []
        while not src.finished:
            requests += pipe.poll(0)
            assert gc.get_threshold() == default_gc and gc.isenabled()
        requests += pipe.flush()
    assert requests and gc.get_threshold() == default_gc and gc.isenabled()


def test_paced_gc_collects_only_between_polls_and_gives_the_gc_back(
        default_gc: tuple[int, int, int]) -> None:
    collections: list[int] = []

    def note(phase: str, info: dict[str, int]) -> None:
        if phase == "stop":
            collections.append(info["generation"])

    gc.callbacks.append(note)
    try:
        with paced_gc(every_s=0.0) as between_polls:
            assert not gc.isenabled()
            with ReplaySource(FIXTURE, batch_events=16) as src:
                pipe = Pipeline(src, trace_names(FIXTURE), src.header.lb_note)
                while not src.finished:
                    pipe.poll(0)
            assert not collections  # none by itself, however much was allocated
            between_polls()
            assert collections == [2]
    finally:
        gc.callbacks.remove(note)
    assert gc.isenabled() and gc.get_threshold() == default_gc
