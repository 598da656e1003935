"""When the cyclic GC runs in a process that only runs the pipeline (`trace`, `replay`, the
agent): off, and one full collection every so often between polls. The pipeline itself sets
no GC policy; each front end chooses its own (the TUI's is tracer/tui/collector.py)."""

from __future__ import annotations

import gc
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

COLLECT_EVERY_S = 30.0


@contextmanager
def paced_gc(every_s: float = COLLECT_EVERY_S) -> Iterator[Callable[[], None]]:
    """The cyclic GC off, and one full collection every `every_s` at the call of the function
    yielded (between polls); the GC as it was at the end.

    The pipeline's objects are acyclic and die by reference counting; the automatic
    collections still walked every young survivor (tuples in flight, remembered connections,
    finished requests on their way out): 13 us per request on a recorded flood, a fifth of
    the full `trace`'s cost, for ~0.1 freed objects per request. What does form cycles
    elsewhere (the docker SDK's sockets, exceptions) waits at most `every_s`."""
    was = gc.isenabled()
    gc.disable()
    last = time.monotonic()

    def between_polls() -> None:
        nonlocal last
        if time.monotonic() - last >= every_s:
            gc.collect()
            last = time.monotonic()

    try:
        yield between_polls
    finally:
        if was:
            gc.enable()
