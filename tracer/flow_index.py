"""Open requests by every tuple they had: how a connection is followed through NAT.

Every tuple a request had in any netns (before and after each DNAT/SNAT) indexes it, so the
next netns's events, which only know their own post-NAT view, find it. Replies are the
reversed tuples."""

from __future__ import annotations

from tracer.events import Flow
from tracer.in_flight import InFlight

# tuple -> (request, is the reply direction)
Index = dict[Flow, tuple[InFlight, bool]]


class FlowIndex:
    """One index per protocol: a lookup needs no (proto, tuple) key built per event."""

    def __init__(self) -> None:
        # Every forward tuple a request had, and its reverse, so a lookup never builds a
        # reversed tuple.
        self.by_proto: dict[int, Index] = {6: {}, 17: {}}

    @staticmethod
    def register(o: InFlight, index: Index, t: Flow) -> None:
        """t is a forward tuple of o (a no-op when already known)."""
        if t not in o.tuples:
            back = t.reversed()
            o.tuples.add(t)
            o.backs.add(back)
            index[t] = (o, False)
            index.setdefault(back, (o, True))

    def forget(self, o: InFlight) -> None:
        """o's entries, where no later request took them over."""
        index = self.by_proto[6 if o.req.proto == "tcp" else 17]
        for keys in (o.tuples, o.backs):
            for key in keys:
                hit = index.get(key)
                if hit is not None and hit[0] is o:
                    del index[key]
