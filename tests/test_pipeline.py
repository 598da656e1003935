"""The pipeline sets no GC policy: the front end does (tests/fixtures/lab_mesh_vip.swt
replayed). `trace`, `replay` and the agent pace it with tracer.gc_pacing.paced_gc; the TUI's
feed thread raises the young threshold only while it correlates."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from tracer.correlate import Correlator
from tracer.gc_pacing import paced_gc
from tracer.model import Request
from tracer.pipeline import Pipeline
from tracer.tracefile.replay import ReplaySource
from tracer.tracefile.topology import trace_names
from tracer.tui.collector import CORRELATING_YOUNG
from tracer.tui.pipeline_feed import PipelineFeed

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


class _Seeing(Correlator):
    """A correlator that notes the GC's young threshold while it works."""

    seen: list[int]

    def feed_array(self, records: np.ndarray) -> list[Request]:
        self.seen.append(gc.get_threshold()[0])
        return super().feed_array(records)


def test_the_tui_feed_raises_the_young_threshold_only_while_it_correlates(
        default_gc: tuple[int, int, int]) -> None:
    with ReplaySource(FIXTURE, batch_events=16) as src:
        pipe = Pipeline(src, trace_names(FIXTURE), src.header.lb_note)
        pipe.correlator = seeing = _Seeing(src.info.drop_reasons)
        seeing.seen = []
        feed = PipelineFeed(pipe)
        requests = []
        while not feed.finished:
            requests += feed.poll(0).requests
            assert gc.get_threshold() == default_gc
    assert requests and set(seeing.seen) == {CORRELATING_YOUNG}


def test_a_higher_threshold_of_the_caller_stands(default_gc: tuple[int, int, int]) -> None:
    gc.set_threshold(50_000, 10, 10)
    with ReplaySource(FIXTURE) as src:
        feed = PipelineFeed(Pipeline(src, trace_names(FIXTURE), src.header.lb_note))
        while not feed.finished:
            feed.poll(0)
    assert gc.get_threshold() == (50_000, 10, 10)
