"""The order hops are shown in: what caused what, not when a probe happened to see it.

The probes see some decisions late: the bcc backend reads a packet's mark at conntrack confirm,
after IPVS already used it, and Docker DNS's answer is parsed from the reply that carries it.
Every view (text, TUI, talk mode) shows the same causal order; times stay as observed.
"""

from __future__ import annotations

from tracer.model import Hop, HopKind, Request


def causal_hops(r: Request) -> list[Hop]:
    """r.hops with a MARK before the LB it drives, and a DNS answer before its reply."""
    hops = r.hops[:]
    reply = -1
    prev: Hop | None = None  # the hop now just before h
    # One pass: this runs for every request a live trace shows.
    for i, h in enumerate(hops):
        k = h.kind
        # mangle PREROUTING sets the mark that IPVS then matches: the mark comes first.
        if k is _MARK and prev is not None and prev.kind is _LB and h.netns == prev.netns \
                and h.where == prev.where:
            hops[i - 1], hops[i] = h, prev  # prev (the LB) is still the hop before the next
            continue
        if k is _REPLY and reply < 0:
            reply = i
        prev = h
    if reply >= 0:
        # A DNS answer after the reply is that reply's content: show it as what came back.
        answers = [h for h in hops[reply + 1 :] if h.kind is _DNS]
        if answers:
            rest = [h for h in hops[reply + 1 :] if h.kind is not _DNS]
            hops = hops[:reply] + answers + [hops[reply]] + rest
    return hops


# Members as plain names: an enum member read off its class costs a lookup per hop (3.11).
_MARK, _LB, _REPLY, _DNS = HopKind.MARK, HopKind.LB, HopKind.REPLY, HopKind.DNS
