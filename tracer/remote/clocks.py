"""Per-node clock offsets, NTP-style.

Two kinds of samples, both as (time sent, time received) in the two clocks:
- the collector's pings to each agent (coarse: error up to half the round trip);
- the overlay itself: a VXLAN packet seen leaving node A (A's clock) and entering node B
  (B's clock), matched by outer addresses, VNI, inner tuple and inner IP id. With packets
  both ways, B's clock minus A's is (min delay A->B - min delay B->A) / 2, within half the
  sum of the two minima (the true one-way delays are unknown but positive).

Offsets are "agent clock minus collector clock": an event's time on the collector's
timeline is its ts_ns minus its node's offset.
"""

from __future__ import annotations

import threading
from collections import OrderedDict, deque
from dataclasses import dataclass

import numpy as np

from tracer.events import Point

SAMPLES = 64  # recent samples kept per direction: the minimum of them is used
PENDING = 4096  # VXLAN packets seen at one end, waiting for the other end


@dataclass(frozen=True)
class Offset:
    """One node's clock as estimated now."""

    node: int
    offset_ns: int  # agent clock - collector clock
    error_ns: int  # +- this: of the offset vs the reference node (vxlan), else vs the collector
    source: str  # "vxlan" (both ways), "ping+vxlan" (pings, kept causal by one way), "ping"
    samples: int
    reference: int = 0  # the node it was measured against (0: the collector itself)
    relative_ns: int = 0  # offset_ns minus the reference's


class _MinWindow:
    def __init__(self) -> None:
        self.values: deque[int] = deque(maxlen=SAMPLES)

    def add(self, v: int) -> None:
        self.values.append(v)

    def min(self) -> int:
        return min(self.values)


class ClockAligner:
    """Collects ping and VXLAN samples; answers each node's offset and its error."""

    def __init__(self) -> None:
        # Pings arrive on the agents' threads; the merge asks for offsets on its own.
        self._lock = threading.Lock()
        self._ping: dict[int, deque[tuple[int, int]]] = {}  # node -> (rtt, offset)
        self._oneway: dict[tuple[int, int], _MinWindow] = {}  # (from, to) -> recv - sent
        self._pending: OrderedDict[tuple[int, ...], tuple[int, int, int]] = OrderedDict()

    def ping(self, node: int, t1: int, t2: int, t3: int) -> None:
        """A ping sent at t1 and answered at t3 (collector clock), stamped t2 by the agent."""
        rtt = max(t3 - t1, 0)
        with self._lock:
            self._ping.setdefault(node, deque(maxlen=SAMPLES)).append((rtt, t2 - (t1 + t3) // 2))

    def vxlan(self, node: int, events: np.ndarray) -> None:
        """VXLAN events of one node, raw (its own clock, its own netns inodes)."""
        sel = events[(events["point"] == Point.VXLAN_OUT) | (events["point"] == Point.VXLAN_IN)]
        if len(sel):
            with self._lock:
                self._match(node, sel)

    def _match(self, node: int, sel: np.ndarray) -> None:
        for e in sel.tolist():
            ts, point = int(e[0]), int(e[8])
            pkt, orig = e[14], e[15]
            # outer src, dst, VNI, inner tuple, inner IP id, inner proto and TCP flags
            key = (*pkt[:2], int(e[5]), *orig, int(e[6]), int(e[9]), int(e[10]))
            other = self._pending.pop(key, None)
            if other is None:
                self._pending[key] = (node, point, ts)
                if len(self._pending) > PENDING:
                    self._pending.popitem(last=False)
                continue
            o_node, o_point, o_ts = other
            if o_node == node or o_point == point:
                self._pending[key] = (node, point, ts)
                continue
            sent, recv = ((o_node, o_ts), (node, ts)) if point == Point.VXLAN_IN \
                else ((node, ts), (o_node, o_ts))
            self._oneway.setdefault((sent[0], recv[0]), _MinWindow()).add(recv[1] - sent[1])

    def _ping_offset(self, node: int) -> tuple[int, int, int] | None:
        samples = self._ping.get(node)
        if not samples:
            return None
        rtt, off = min(samples)
        return off, rtt // 2, len(samples)

    def pair(self, a: int, b: int) -> tuple[int, int, int] | None:
        """(b's clock - a's clock, error, samples) from the overlay, if seen both ways."""
        ab, ba = self._oneway.get((a, b)), self._oneway.get((b, a))
        if ab is None or ba is None:
            return None
        d_ab, d_ba = ab.min(), ba.min()
        return (d_ab - d_ba) // 2, max((d_ab + d_ba) // 2, 0), len(ab.values) + len(ba.values)

    def _bounds(self, a: int, b: int) -> tuple[float, float, int]:
        """Causality: b's clock - a's clock lies between -(min delay b->a) and min delay
        a->b as measured (packets arrive after they leave), for whichever direction was seen."""
        ab, ba = self._oneway.get((a, b)), self._oneway.get((b, a))
        hi = ab.min() if ab is not None else float("inf")
        lo = -ba.min() if ba is not None else float("-inf")
        return lo, hi, (len(ab.values) if ab else 0) + (len(ba.values) if ba else 0)

    def offset(self, node: int, nodes: list[int]) -> Offset | None:
        """Best estimate for `node`: against the reference (the first of `nodes` with a ping)
        over the overlay when both directions were seen; else from its pings, moved just
        enough that no packet seen on the overlay arrives before it left."""
        with self._lock:
            return self._offset(node, nodes)

    def _offset(self, node: int, nodes: list[int]) -> Offset | None:
        ref = next((n for n in nodes if self._ping_offset(n) is not None), None)
        own = self._ping_offset(node)
        ref_ping = self._ping_offset(ref) if ref is not None else None
        if ref is None or ref == node or ref_ping is None:
            return None if own is None else Offset(node, own[0], own[1], "ping", own[2])
        pair = self.pair(ref, node)
        if pair is not None:
            theta, err, n = pair
            return Offset(node, ref_ping[0] + theta, err, "vxlan", n, ref, theta)
        if own is None:
            return None
        lo, hi, n = self._bounds(ref, node)
        theta = own[0] - ref_ping[0]
        if n == 0:
            return Offset(node, own[0], own[1], "ping", own[2])
        theta = int(min(max(theta, lo), hi))
        return Offset(node, ref_ping[0] + theta, own[1] + ref_ping[1], "ping+vxlan", own[2] + n,
                      ref, theta)
