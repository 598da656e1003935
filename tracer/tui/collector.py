"""When Python's cyclic GC walks the TUI's objects: little of them, and not while a key waits.

Four parts. The requests, which come and go by the hundred thousand, are kept off the
collector (tracer/tui/untrack.py). What lives as long as the app (modules, classes, functions,
the screens: ~100k objects, ~50 ms of CPU per full collection) is frozen once at the start.
Full collections of the rest (Textual's line caches, the correlator's state: 5-30 ms) run from
a timer while no key is waiting, or right after a key's frame when keys keep coming, rather
than whenever the allocation count says so (often in the middle of a key). Young collections
are fewer only while the feed thread correlates (correlating()). This is the whole policy of
the TUI's process: the pipeline sets none of its own.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Iterator
from contextlib import contextmanager

FULL_EVERY_S = 1.0  # a full collection about this often (each walks what piled up since)
QUIET_S = 0.2  # ... once no key or click came for this long
OVERDUE_S = 3.0  # keys without such a pause this long: collect right after a key's frame
# The oldest generation's threshold (young collections between two automatic full ones):
# this high, the collector never starts a full collection by itself.
NO_AUTO_FULL = 1_000_000
# Objects allocated between two young collections while the feed thread correlates. Decoding
# and correlating allocate a few acyclic objects per event (nothing to collect): at the default
# 700 a young collection ran every ~150 events and took 15-20% of the pipeline's time. Not for
# the UI thread's own work: there the survivors are Textual's, and a young collection of 10k
# of them took up to 15 ms (scripts/bench_tui.py, filter as you type), 3.5 ms at 700.
CORRELATING_YOUNG = 10_000


@contextmanager
def correlating() -> Iterator[None]:
    """CORRELATING_YOUNG as the young threshold for the block, the old one again after; the
    feed thread's source waits outside it, so the UI thread mostly runs at its own."""
    young, *older = gc.get_threshold()
    if not 0 < young < CORRELATING_YOUNG:  # the GC is off, or already raised
        yield
        return
    gc.set_threshold(CORRELATING_YOUNG, *older)
    try:
        yield
    finally:
        # Only the young threshold, and only if it is still ours: the older ones are the
        # Collector's (it holds the oldest at NO_AUTO_FULL from the UI thread meanwhile).
        now = gc.get_threshold()
        if now[0] == CORRELATING_YOUNG:
            gc.set_threshold(young, *now[1:])


class Collector:
    """Freeze at start(), full collections at tick() between keys, all undone at stop()."""

    def __init__(self) -> None:
        self._threshold = 0  # the oldest generation's, to give back at stop()
        self._last = float("inf")  # the last full collection; none due before start()

    def start(self) -> None:
        """Collect, then freeze what lives now: what of it dies in a cycle stays until stop()
        (a bounded ~1k objects). Freezing again later would strand Textual's line caches each
        time (~2k objects per freeze)."""
        gc.collect()
        gc.freeze()
        self._threshold = gc.get_threshold()[2]
        self._hold_full()
        self._last = time.monotonic()

    def tick(self, input_at: float) -> None:
        """A full collection if one is due and the last key or click (input_at, monotonic)
        is QUIET_S old; called from a timer on the UI thread."""
        now = time.monotonic()
        if now - self._last >= FULL_EVERY_S and now - input_at >= QUIET_S:
            self._collect()
        # Again each time: the feed thread gives back the thresholds it found when it started
        # a batch (correlating()), which may predate start().
        self._hold_full()

    def after_input_frame(self) -> None:
        """Keys without a pause: a collection long overdue runs once a key's frame is shown,
        the moment furthest from the next key, rather than at a timer's random one."""
        if time.monotonic() - self._last >= OVERDUE_S:
            self._collect()

    def _collect(self) -> None:
        gc.collect()
        self._last = time.monotonic()

    def stop(self) -> None:
        """The collector as it was: frozen objects back in its sight, its own full runs."""
        gc.unfreeze()
        young, middle, oldest = gc.get_threshold()
        if oldest == NO_AUTO_FULL:
            gc.set_threshold(young, middle, self._threshold)

    @staticmethod
    def _hold_full() -> None:
        young, middle, _ = gc.get_threshold()
        if young:  # 0: the collector is off, nothing to hold
            gc.set_threshold(young, middle, NO_AUTO_FULL)
