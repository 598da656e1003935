"""Trace files (.swt): record events and topology, read them back, replay, export."""

from tracer.tracefile.format import SCHEMA_VERSION, SUFFIX, TraceHeader
from tracer.tracefile.reader import (
    EventChunk,
    LostRecord,
    Record,
    TopologyRecord,
    TraceDamage,
    TraceReader,
    TraceSummary,
    open_trace,
)
from tracer.tracefile.replay import ReplaySource
from tracer.tracefile.writer import TraceWriter

__all__ = [
    "SCHEMA_VERSION",
    "SUFFIX",
    "EventChunk",
    "LostRecord",
    "Record",
    "ReplaySource",
    "TopologyRecord",
    "TraceDamage",
    "TraceHeader",
    "TraceReader",
    "TraceSummary",
    "TraceWriter",
    "open_trace",
]
