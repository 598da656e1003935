"""When Python's cyclic GC walks the TUI's objects: little of them, and not while a key waits.

Four parts. The requests, which come and go by the hundred thousand, are kept off the
collector (tracer/tui/untrack.py). What lives as long as the app (modules, classes, functions,
the screens: ~100k objects, ~50 ms of CPU per full collection) is frozen once at the start.
Full collections of the rest (Textual's line caches, the correlator's state: 5-30 ms) run from
a timer while no key is waiting, or right after a key's frame when keys keep coming, rather
than whenever the allocation count says so (often in the middle of a key). Young collections
run every YOUNG allocations, not every 700: the feed thread's pipeline allocates a few acyclic
objects per event, and at 700 a young collection ran every ~150 events (15-20% of its time).
This is the whole policy of the TUI's process: the pipeline sets none of its own.
"""

from __future__ import annotations

import gc
import time

FULL_EVERY_S = 1.0  # a full collection about this often (each walks what piled up since)
QUIET_S = 0.2  # ... once no key or click came for this long
OVERDUE_S = 3.0  # keys without such a pause this long: collect right after a key's frame
# The oldest generation's threshold (young collections between two automatic full ones):
# this high, the collector never starts a full collection by itself.
NO_AUTO_FULL = 1_000_000
YOUNG = 10_000  # allocations between two young collections while the app runs


class Collector:
    """Freeze and fewer young collections at start(), full collections at tick() between
    keys, all undone at stop()."""

    def __init__(self) -> None:
        self._thresholds: tuple[int, int, int] | None = None  # to give back at stop()
        self._last = float("inf")  # the last full collection; none due before start()

    def start(self) -> None:
        """Collect, then freeze what lives now: what of it dies in a cycle stays until stop()
        (a bounded ~1k objects). Freezing again later would strand Textual's line caches each
        time (~2k objects per freeze)."""
        gc.collect()
        gc.freeze()
        self._thresholds = gc.get_threshold()
        young, middle, _ = self._thresholds
        if young:  # 0: the collector is off, nothing to pace
            gc.set_threshold(max(young, YOUNG), middle, NO_AUTO_FULL)
        self._last = time.monotonic()

    def tick(self, input_at: float) -> None:
        """A full collection if one is due and the last key or click (input_at, monotonic)
        is QUIET_S old; called from a timer on the UI thread."""
        now = time.monotonic()
        if now - self._last >= FULL_EVERY_S and now - input_at >= QUIET_S:
            self._collect()

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
        if self._thresholds is not None:
            gc.set_threshold(*self._thresholds)
            self._thresholds = None
