"""Keep the requests the TUI holds off the cyclic garbage collector's lists.

A full collection walks every object the collector tracks: 100k stored requests are ~1.8M
objects (a request, its hop list, ~9 hops, their flows), ~0.4 s per collection, a frozen
screen. `gc.freeze()` hid them, but it freezes every object alive at that moment: Textual's
caches, freed later in reference cycles, then stayed frozen for good (~2.5k objects per freeze).
Untracking only the requests' own objects hides them and nothing else.

A request is a tree of values (nothing in it points back), so it can never be part of a
reference cycle: reference counting frees it when the store drops it, and the collector had
nothing to find in it. Were a request ever made part of a cycle, that cycle would never be
collected; tests/test_tui_untrack.py checks that requests stay trees.
"""

from __future__ import annotations

import ctypes
import gc

from tracer.model import Request

# CPython's own call that a container type makes when it leaves the collector (its dealloc).
_UNTRACK = ctypes.pythonapi.PyObject_GC_UnTrack
_UNTRACK.argtypes = (ctypes.py_object,)
_UNTRACK.restype = None


def untrack(r: Request) -> None:
    """Take a request and the objects it holds off the collector's lists (~3 µs)."""
    # gc.is_tracked first: it is False for an object the collector never knew (an int, or a
    # type compiled without GC support), which PyObject_GC_UnTrack must not be given.
    is_tracked, off = gc.is_tracked, _UNTRACK
    for o in (r, r.hops, r.client, r.missing, r.verdict, r.resumed):
        if is_tracked(o):
            off(o)
    for h in r.hops:
        if is_tracked(h):
            off(h)
        if h.before is not None and is_tracked(h.before):
            off(h.before)
        if h.after is not None and is_tracked(h.after):
            off(h.after)
    if r.dns is not None:
        for d in (r.dns, r.dns.addrs, r.dns.tried, *r.dns.tried):
            if is_tracked(d):
                off(d)
