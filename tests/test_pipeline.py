"""The pipeline's process-wide side effects: the GC's young threshold is raised only while it
correlates, and given back after (tests/fixtures/lab_mesh_vip.swt replayed)."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from tracer.correlate import Correlator
from tracer.model import Request
from tracer.pipeline import GC_YOUNG, Pipeline
from tracer.tracefile.replay import ReplaySource
from tracer.tracefile.topology import trace_names

FIXTURE = Path(__file__).parent / "fixtures" / "lab_mesh_vip.swt"


class _Seeing(Correlator):
    """A correlator that notes the GC's young threshold while it works."""

    seen: list[int]

    def feed_array(self, records: np.ndarray) -> list[Request]:
        self.seen.append(gc.get_threshold()[0])
        return super().feed_array(records)


@pytest.fixture
def default_gc() -> Iterator[tuple[int, int, int]]:
    before = gc.get_threshold()
    gc.set_threshold(700, 10, 10)
    yield gc.get_threshold()
    gc.set_threshold(*before)


def test_gc_threshold_is_raised_only_while_the_pipeline_works(
        default_gc: tuple[int, int, int]) -> None:
    with ReplaySource(FIXTURE, batch_events=16) as src:
        pipe = Pipeline(src, trace_names(FIXTURE), src.header.lb_note)
        assert gc.get_threshold() == default_gc  # building one changes nothing
        pipe.correlator = _Seeing(src.info.drop_reasons)
        pipe.correlator.seen = []
        requests = []
        while not src.finished:
            requests += pipe.poll(0)
            assert gc.get_threshold() == default_gc
        requests += pipe.flush()
    assert requests and gc.get_threshold() == default_gc
    assert pipe.correlator.seen and set(pipe.correlator.seen) == {GC_YOUNG}


def test_a_higher_threshold_of_the_caller_stands(default_gc: tuple[int, int, int]) -> None:
    gc.set_threshold(50_000, 10, 10)
    with ReplaySource(FIXTURE) as src:
        pipe = Pipeline(src, trace_names(FIXTURE), src.header.lb_note)
        while not src.finished:
            pipe.poll(0)
        pipe.flush()
    assert gc.get_threshold() == (50_000, 10, 10)
