"""SIGTERM and SIGINT take the clean path of Ctrl-C: detach probes, finish files, remove labs."""

from __future__ import annotations

import os
import signal
from types import FrameType


def stop_signals_as_interrupt() -> None:
    """From now on SIGTERM and SIGINT raise KeyboardInterrupt in this process (not in forked
    children). SIGINT too, because a shell starts a background command (`swarmtrace trace -w
    F &`) with SIGINT ignored, and Python then leaves it ignored: `kill -INT` did nothing."""
    owner = os.getpid()

    def handler(signum: int, frame: FrameType | None) -> None:
        if os.getpid() != owner:
            # A child (pyroute2 forks helpers) inherited the handler: it must just die.
            os._exit(128 + signum)
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
