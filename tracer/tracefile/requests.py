"""A trace file's requests, all at once: the replay source through the one pipeline, at full
speed (for `info`, `export --pcapng`, checks and benchmarks that need the whole list)."""

from __future__ import annotations

import os

from tracer.enrich.names import Names
from tracer.gc_pacing import paced_gc
from tracer.model import Request
from tracer.pipeline import Pipeline
from tracer.tracefile.replay import ReplaySource
from tracer.tracefile.topology import trace_names


def trace_requests(
    path: str | os.PathLike[str], names: Names | None = None, *, report: bool = True
) -> list[Request]:
    """Every request in the trace at `path`, those still open at its end included.

    `names` defaults to the trace's own; report=False keeps the file's damage unreported, for
    a second reading of a file whose first reading has said it.
    """
    with ReplaySource(path, report=report) as src, paced_gc() as between_polls:
        pipe = Pipeline(src, names if names is not None else trace_names(path), src.header.lb_note)
        out: list[Request] = []
        while not src.finished:
            between_polls()
            out += pipe.poll(0)
        return out + pipe.flush()
