"""A trace file's requests, all at once: the replay source through the one pipeline, at full
speed, named with the trace's own names (for checks and benchmarks that need the whole list)."""

from __future__ import annotations

import os

from tracer.model import Request
from tracer.pipeline import Pipeline
from tracer.tracefile.replay import ReplaySource
from tracer.tracefile.topology import trace_names


def trace_requests(path: str | os.PathLike[str]) -> list[Request]:
    """Every request in the trace at `path`, those still open at its end included."""
    with ReplaySource(path) as src:
        pipe = Pipeline(src, trace_names(path), src.header.lb_note)
        out: list[Request] = []
        while not src.finished:
            out += pipe.poll(0)
        return out + pipe.flush()
