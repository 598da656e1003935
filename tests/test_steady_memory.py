"""A long live trace holds steady memory (issue 16 item 4): once its count-bounded caches are
full, the pipeline, the names and the sinks keep nothing per request.

A generated routing-mesh stream (tracer/tracefile/synthetic.py: client ports cycle through the
ephemeral range, request ids and times only grow, as in an hour at 1,000 requests/s) runs
through the Pipeline with names and both sinks, in polls of the size a live trace reads. After
a warm-up that fills every count bound (remembered connections, decoded tuples, sink pieces),
the Python objects alive must stay put while as many requests again go through: a structure
that keeps one small object per request adds tens of thousands of blocks here, and would add
3.6 M in an hour at 1,000 requests/s. Not a timed test: it counts objects, not RSS.
"""

from __future__ import annotations

import gc
import os
import sys
from collections.abc import Iterator

import numpy as np

from tracer import events
from tracer.enrich.history import RANK_DOCKER, NameHistory, RecordedNames
from tracer.enrich.names import AddrName, NetnsName
from tracer.enrich.topology import Topology
from tracer.events import EVENT_DTYPE
from tracer.past_connections import MAX_PAST
from tracer.pipeline import Pipeline
from tracer.sinks.json_line import PIECES_KEPT
from tracer.sinks.text import KEPT, JsonSink, TextSink
from tracer.source import SourceInfo, SourceStats
from tracer.tracefile.synthetic import (
    BACKENDS,
    MESH_MARK,
    NETNS_BACKEND,
    NETNS_HOST,
    NETNS_SBOX,
    mesh_events,
)

PART = 14_000  # requests per generated part: half the client ports
WARM_PARTS = 3  # 42,000 requests: every port used, MAX_PAST (16,384) connections remembered
MORE_PARTS = 3
POLL_EVENTS = 4096  # what one read of the ring holds at a few thousand events/s
# Objects that may come and go between two counts: the last poll's requests, a cache's
# refill after it is emptied at its bound, interned strings. A structure that keeps one
# object per request adds at least PART * MORE_PARTS.
SLACK_BLOCKS = 6_000


class _Generated:
    """An EventSource over generated parts, each shifted past the one before in time."""

    info = SourceInfo(backend="generated", kernel="", live=False, notes=(), drop_reasons=())

    def __init__(self, parts: range) -> None:
        self._polls = self._chunks(parts)

    @staticmethod
    def _chunks(parts: range) -> Iterator[np.ndarray]:
        for k in parts:
            arr = mesh_events(PART, seed=k, rate_per_s=1000.0)
            arr["ts_ns"] += np.uint64(k * (PART + 10) * 1_000_000)  # 1 ms per request
            for i in range(0, len(arr), POLL_EVENTS):
                yield arr[i : i + POLL_EVENTS]

    def poll(self, timeout_s: float) -> np.ndarray:
        return next(self._polls, np.empty(0, dtype=EVENT_DTYPE))

    @property
    def finished(self) -> bool:
        return False

    def lost(self) -> int:
        return 0

    def stats(self) -> SourceStats:
        return SourceStats()


def _names() -> RecordedNames:
    history = NameHistory()
    topo = Topology(
        netns={NETNS_HOST: NetnsName("host", "host", node="node1"),
               NETNS_SBOX: NetnsName("ingress_sbox", "ingress_sbox", node="node1"),
               NETNS_BACKEND: NetnsName("t", "container", node="node1", task="web.1.abcdefg")},
        addrs={b: AddrName("task", task=f"web.{i}.abcdefg", service="web", node="node1")
               for i, b in enumerate(BACKENDS)},
        lb_index={("node1", MESH_MARK): "web"})
    history.observe("docker:node1", topo, 0, RANK_DOCKER)
    return RecordedNames(history)


def _run(pipe: Pipeline, source: _Generated, sinks: list[JsonSink | TextSink]) -> int:
    """Poll `source` until it is dry; how many requests went through."""
    pipe.source, n = source, 0
    while len(arr := pipe.pump(0)):
        reqs = pipe._correlated(arr)
        for sink in sinks:
            sink.write_all(reqs)
        n += len(reqs)
    return n


def _alive() -> int:
    gc.collect()
    return sys.getallocatedblocks()


def test_memory_stays_put_once_the_bounded_caches_are_full() -> None:
    warm_up = _Generated(range(WARM_PARTS))
    pipe = Pipeline(warm_up, _names())
    with open(os.devnull, "w") as out:
        json_sink, text_sink = JsonSink(out), TextSink(out, hops=True)
        sinks: list[JsonSink | TextSink] = [json_sink, text_sink]
        warm = _run(pipe, warm_up, sinks)
        before = _alive()
        more = _run(pipe, _Generated(range(WARM_PARTS, WARM_PARTS + MORE_PARTS)), sinks)
        after = _alive()
    assert warm > PART * (WARM_PARTS - 1) and more > PART * (MORE_PARTS - 1), (warm, more)
    # The count bounds themselves, where they are kept.
    c = pipe.correlator
    assert len(c._past._by_id) == MAX_PAST
    assert len(c._past._by_tuple) <= MAX_PAST * 3
    assert len(c._in_flight.by_id) < 100 and sum(map(len, c._flows.by_proto.values())) < 1000
    assert len(events._memo.flows) <= events._Memo.LIMIT + POLL_EVENTS * 3
    assert len(json_sink._lines._hops) < PIECES_KEPT and len(text_sink._kept.actions) < KEPT
    assert after - before < SLACK_BLOCKS, \
        f"{after - before} more objects alive after {more} more requests ({before} -> {after})"
