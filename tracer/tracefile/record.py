"""`trace -w FILE`: record what a live pipeline sees (events, names, lost counts) as it runs."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

from tracer.errors import TraceFileError
from tracer.pipeline import Pipeline
from tracer.source import Filter
from tracer.tracefile.format import TraceHeader
from tracer.tracefile.topology import inventory
from tracer.tracefile.writer import TraceWriter

log = logging.getLogger(__name__)

CHECK_INTERVAL_S = 1.0  # how often names and lost counters are compared with what is written


class NamesTap:
    """Keeps a writer's names and lost counter in step with the pipeline, about every second."""

    def __init__(self, writer: TraceWriter, pipe: Pipeline) -> None:
        self.writer = writer
        self.pipe = pipe
        self._names_written = 0  # the names log's count when last written
        self._wrote_names = False
        self._next_check = 0.0

    def maybe_sync(self) -> None:
        if time.monotonic() >= self._next_check:
            self.sync()

    def sync(self) -> None:
        """Write names that changed and the lost counter, if they grew."""
        self._next_check = time.monotonic() + CHECK_INTERVAL_S
        self.writer.lost(self.pipe.source.stats().lost)
        if self.pipe.names is None:
            return
        # The first record carries everything so far; later ones only what is new.
        snap: dict[str, Any] = (self.pipe.names.changes_since(self._names_written)
                                if self._wrote_names else self.pipe.names.snapshot())
        if self._wrote_names and not snap.get("changes"):
            return
        self.writer.topology(time.monotonic_ns(), snap, snapshot=not self._wrote_names)
        self._names_written = int(snap["count"])
        self._wrote_names = True


class _Tap:
    """A Pipeline tap: raw events to the writer, with names and lost counts kept in step."""

    def __init__(self, writer: TraceWriter, pipe: Pipeline) -> None:
        self.writer = writer
        self.names = NamesTap(writer, pipe)
        self.stopped = False

    def __call__(self, events: np.ndarray) -> None:
        if self.stopped:
            return
        try:
            self.writer.events(events)
            self.names.maybe_sync()
        except TraceFileError as err:
            # Recording stops; tracing goes on. One line says why and what is kept.
            self.stopped = True
            log.warning("%s", err)


def recording_header(pipe: Pipeline, filters: Filter, notes: tuple[str, ...] = ()) -> TraceHeader:
    """The header of a file recorded from `pipe` from now on."""
    snap = pipe.names.snapshot() if pipe.names is not None else None
    return TraceHeader.now(
        pipe.source.info, filters, nodes=inventory(snap).nodes, notes=notes,
        lb_note=pipe.lb_note
    )


@contextmanager
def recording(
    pipe: Pipeline, path: str | os.PathLike[str], filters: Filter, notes: tuple[str, ...] = ()
) -> Iterator[TraceWriter]:
    """Record `pipe` into `path` while the block runs; the file is finished on exit (Ctrl-C too).

    A full disk stops the recording with one warning line; tracing goes on.
    """
    header = recording_header(pipe, filters, notes)
    writer = TraceWriter(path, header)
    tap = _Tap(writer, pipe)
    pipe.taps.append(tap)
    try:
        tap.names.sync()
        yield writer
    finally:
        pipe.taps.remove(tap)
        try:
            if not tap.stopped:
                tap.names.sync()
            writer.close()
        except TraceFileError as err:
            log.warning("%s", err)
