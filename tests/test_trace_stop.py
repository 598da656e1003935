"""`trace`'s own loops (show, record_only) end when another thread sets their stop event, as
the overhead bench runs them (tests/fixtures/lab_mesh_vip.swt replayed)."""

from __future__ import annotations

import gc
import io
import json
import threading
import time
from pathlib import Path

from tracer.commands.trace import record_only, show
from tracer.pipeline import Pipeline
from tracer.sinks.text import JsonSink
from tracer.tracefile.replay import ReplaySource
from tracer.tracefile.topology import trace_names

FIXTURE = Path(__file__).parent / "fixtures" / "lab_mesh_vip.swt"


def _stop_after(seconds: float) -> threading.Event:
    stop = threading.Event()
    timer = threading.Timer(seconds, stop.set)
    timer.daemon = True
    timer.start()
    return stop


def test_show_runs_until_its_stop_is_set() -> None:
    out = io.StringIO()
    enabled = gc.isenabled()
    with ReplaySource(FIXTURE) as src:
        pipe = Pipeline(src, trace_names(FIXTURE), src.header.lb_note)
        t0 = time.monotonic()
        show(pipe, JsonSink(out), 0, None, stop=_stop_after(0.5))
        took = time.monotonic() - t0
        assert src.finished  # it read on until told, not stopping at the trace's end
    assert 0.5 <= took < 5.0
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert lines and all(r["status"] for r in lines)
    assert gc.isenabled() == enabled  # its paced GC given back


def test_a_stop_already_set_ends_show_before_it_polls() -> None:
    with ReplaySource(FIXTURE) as src:
        pipe = Pipeline(src, trace_names(FIXTURE), src.header.lb_note)
        stop = threading.Event()
        stop.set()
        show(pipe, JsonSink(io.StringIO()), 0, None, stop=stop)
        assert pipe.events == 0


def test_record_only_runs_until_its_stop_is_set() -> None:
    tapped = [0]
    with ReplaySource(FIXTURE) as src:
        pipe = Pipeline(src)
        pipe.taps.append(lambda arr: tapped.__setitem__(0, tapped[0] + len(arr)))
        record_only(pipe, None, stop=_stop_after(0.3))
        assert src.finished and tapped[0] == pipe.events == src.stats().events > 0
