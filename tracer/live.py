"""Live tracing set-up shared by `trace`, `tui` and `demo`: backend, names, lab notes."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

from tracer.enrich.names import Names
from tracer.pipeline import Pipeline
from tracer.probes.choose import open_source
from tracer.source import Filter

log = logging.getLogger(__name__)


def live_names() -> Names | None:
    """Docker's names where a daemon answers, else netns names; None if neither loads."""
    try:
        from tracer.enrich.live import open_names
    except ImportError:
        return None
    return open_names()


def lab_lb_note() -> str:
    """The netns lab on a kernel without IPVS balances with iptables: say so on LB hops."""
    try:
        from tracer.lab import status
    except ImportError:
        return ""
    info = status()
    return "IPVS stand-in: iptables round-robin DNAT" if info and info.lb == "stand-in" else ""


@contextmanager
def open_pipeline(backend: str, flt: Filter) -> Iterator[Pipeline]:
    with open_source(backend, flt) as source:
        yield Pipeline(source, live_names(), lab_lb_note())
