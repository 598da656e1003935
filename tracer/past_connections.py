"""Established TCP connections whose request has finished, remembered so that a packet
dropped in their middle (after an idle timeout: IPVS's is 900 s) names the request that
opened them. Bounded in age and count: past either bound such a drop is still caught, only
without that name."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from typing import NamedTuple, cast

from tracer.events import Flow
from tracer.model import Request

PAST_NS = 3_600_000_000_000
MAX_PAST = 16_384

# A tuple as a plain tuple: Flow, a tuple subclass, stays tracked by the garbage collector
# for life, and tens of thousands of remembered connections made its full collections cost
# more than the tracing. Equal to the Flow it copies, and hashed alike.
Plain = tuple[str, int, str, int]
# Spelled once: a subscripted type written in a call is built anew at every call.
_Plains = tuple[Plain, ...]


class Past(NamedTuple):
    """What a request that starts in a connection's middle needs from the one that opened
    it. Kept small: every connection that opens is one."""

    id: int
    opened_ns: int
    client: Plain
    backend_addr: str
    mode: str
    tuples: tuple[Plain, ...]  # its forward tuples in every netns


class PastConnections:
    """Finished requests' connections by request id, oldest first, and by each tuple."""

    def __init__(self, keep_ns: int = PAST_NS, max_kept: int = MAX_PAST) -> None:
        self._keep_ns = keep_ns
        self._max_kept = max_kept
        self._by_id: OrderedDict[int, Past] = OrderedDict()
        self._by_tuple: dict[Plain, int] = {}  # forward tuples only: find() tries both ways

    def remember(self, req: Request, tuples: Iterable[Flow]) -> None:
        plain = cast(_Plains, tuple(map(tuple, tuples)))
        self._by_id[req.id] = Past(req.id, req.start_ns, cast(Plain, tuple(req.client)),
                                   req.backend_addr, req.mode, plain)
        self._by_tuple.update(dict.fromkeys(plain, req.id))
        while self._by_id:
            oldest = next(iter(self._by_id.values()))
            if len(self._by_id) <= self._max_kept and \
                    req.start_ns - oldest.opened_ns < self._keep_ns:
                break
            self.forget(oldest)

    def find(self, pkt: Flow) -> Past | None:
        """The remembered connection a packet of either direction belongs to."""
        by_tuple = self._by_tuple
        return self._by_id.get(by_tuple.get(pkt) or by_tuple.get(pkt.reversed(), 0))

    def forget(self, past: Past) -> None:
        self._by_id.pop(past.id, None)
        for t in past.tuples:
            if self._by_tuple.get(t) == past.id:
                del self._by_tuple[t]
