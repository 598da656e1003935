"""The order hops are shown in: what caused what, not when a probe happened to see it.

The probes see some decisions late: the bcc backend reads a packet's mark at conntrack confirm,
after IPVS already used it, and Docker DNS's answer is parsed from the reply that carries it.
Every view (text, TUI, talk mode) shows the same causal order; times stay as observed.
"""

from __future__ import annotations

from tracer.model import Hop, HopKind, Request


def causal_hops(r: Request) -> list[Hop]:
    """r.hops with a MARK before the LB it drives, and a DNS answer before its reply."""
    hops = list(r.hops)
    for i in range(1, len(hops)):
        h, prev = hops[i], hops[i - 1]
        # mangle PREROUTING sets the mark that IPVS then matches: the mark comes first.
        if h.kind is HopKind.MARK and prev.kind is HopKind.LB and h.netns == prev.netns \
                and h.where == prev.where:
            hops[i - 1], hops[i] = h, prev
    reply = next((i for i, h in enumerate(hops) if h.kind is HopKind.REPLY), None)
    if reply is not None:
        # A DNS answer after the reply is that reply's content: show it as what came back.
        answers = [h for h in hops[reply + 1 :] if h.kind is HopKind.DNS]
        if answers:
            rest = [h for h in hops[reply + 1 :] if h.kind is not HopKind.DNS]
            hops = hops[:reply] + answers + [hops[reply]] + rest
    return hops
