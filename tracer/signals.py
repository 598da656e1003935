"""SIGTERM takes the same clean path as Ctrl-C: detach probes, finish files, remove labs."""

from __future__ import annotations

import os
import signal
from types import FrameType


def sigterm_as_interrupt() -> None:
    """From now on SIGTERM raises KeyboardInterrupt in this process (not in forked children)."""
    owner = os.getpid()

    def handler(signum: int, frame: FrameType | None) -> None:
        if os.getpid() != owner:
            # A child (pyroute2 forks helpers) inherited the handler: it must just die.
            os._exit(128 + signum)
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)
