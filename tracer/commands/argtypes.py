"""Argument types for numbers: each refuses a value out of range with one line, at parse time.

argparse's plain int/float accept `inf`, `nan`, `1e308`, `-1` and `70000`, which then fail
(or silently do nothing) deep inside a command.
"""

from __future__ import annotations

import argparse
import math

MAX_SPEED = 1e6  # a day of recorded time in 0.09 s: beyond it, pacing means nothing


def _whole(text: str, what: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not {what}: {text!r}") from None


def count(text: str) -> int:
    """A number of requests: 1 or more (leave the option out for all of them)."""
    value = _whole(text, "a whole number")
    if value < 1:
        raise argparse.ArgumentTypeError(
            f"must be 1 or more (got {value}); leave it out for no limit"
        )
    return value


def port(text: str) -> int:
    """A TCP/UDP port, 1-65535."""
    value = _whole(text, "a port number")
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"not a port number (1-65535): {value}")
    return value


def speed(text: str) -> float:
    """A replay speed factor: finite, > 0, at most MAX_SPEED."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not (math.isfinite(value) and 0 < value <= MAX_SPEED):
        raise argparse.ArgumentTypeError(
            f"must be > 0 and at most {MAX_SPEED:g} (got {text}); leave it out for full speed"
        )
    return value
