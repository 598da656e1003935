"""SIGTERM and SIGINT take the clean path of Ctrl-C: detach probes, finish files, remove labs."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

# [blocks entered, a stop signal came meanwhile]: see interrupts_held().
_held = [0, False]


def stop_signals_as_interrupt() -> None:
    """From now on SIGTERM and SIGINT raise KeyboardInterrupt in this process (not in forked
    children). SIGINT too, because a shell starts a background command (`swarmtrace trace -w
    F &`) with SIGINT ignored, and Python then leaves it ignored: `kill -INT` did nothing."""
    owner = os.getpid()

    def handler(signum: int, frame: FrameType | None) -> None:
        if os.getpid() != owner:
            # A child (pyroute2 forks helpers) inherited the handler: it must just die.
            os._exit(128 + signum)
        if _held[0]:
            _held[1] = True
            return
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


@contextmanager
def interrupts_held() -> Iterator[None]:
    """A stop signal that comes inside the block raises KeyboardInterrupt at its end: for work
    that must not be cut in half. A poll takes its finished requests out of the correlator
    and then writes them: an interrupt between the two lost them (the last ~80 requests of an
    hour at 1,000 requests/s were in the trace file but never shown). A blocking wait inside
    goes on to its own timeout: keep the block short."""
    _held[0] += 1
    try:
        yield
    finally:
        _held[0] -= 1
    if not _held[0] and _held[1]:
        _held[1] = False
        raise KeyboardInterrupt
