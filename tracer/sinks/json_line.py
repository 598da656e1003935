"""A request's JSON line (schema v1), written from pieces kept across requests.

The same text as Request.to_json() encoded compactly (tests/test_json_line.py checks it on
every fixture), at a third of the cost: `trace --json` writes one per request, and a flood's
hops repeat the same few kinds, netns and details. Building the dicts and encoding them was
most of the JSON sink's time.
"""

from __future__ import annotations

import json
from json.encoder import encode_basestring_ascii as _str  # C, what the encoder itself uses

from tracer.model import JSON_SCHEMA_VERSION, Request

ENCODER = json.JSONEncoder(separators=(",", ":"))  # what json.dumps builds on every call

# The request's fields up to its hops, in Request.to_json()'s order.
_HEAD = ('{"v":' + str(JSON_SCHEMA_VERSION) + ',"id":%d,"proto":%s,"client":%s,'
         '"client_name":%s,"entry":%s,"backend":%s,"service":%s,"mode":%s,"status":%s,'
         '"start_ns":%d,"reply_ms":%s,"duration_ms":%s,"hops":[')

# A hop's fields around its time, by (kind, netns, node, ifindex, mark); a detail's field by
# its text. Bounded: unnamed netns ("netns:<inode>") churn on a long-running trace.
_HopKey = tuple[str, str, str, int, int]
PIECES_KEPT = 4096


def _opt(s: str) -> str:
    return _str(s) if s else "null"


def _ms(ns: int) -> str:
    return repr(round(ns / 1e6, 3))


def _us(ns: int) -> str:
    """repr(round(ns / 1e3, 1)), a hop's time, in integers: the float's round() and repr()
    were a third of a line's cost. Off a tie (a multiple of 50 ns), the float's error (below
    1e-4 us under 10**15 ns) cannot change which way it rounds; at a tie, or outside that
    range, the float decides."""
    if 0 <= ns < 10**15:
        tenths, rest = divmod(ns, 100)
        if rest != 50:
            if rest > 50:
                tenths += 1
            return f"{tenths // 10}.{tenths % 10}"
    return repr(round(ns / 1e3, 1))


class JsonLines:
    """Requests as JSON lines; one per sink, so that its pieces outlive a request."""

    def __init__(self) -> None:
        self._hops: dict[_HopKey, tuple[str, str]] = {}
        self._details: dict[str, str] = {}

    def _hop_pieces(self, key: _HopKey) -> tuple[str, str]:
        """The hop's JSON before its time (kind, netns) and after it (node, ifindex, mark)."""
        if len(self._hops) >= PIECES_KEPT:
            self._hops.clear()
        kind, where, node, ifindex, mark = key
        head = f'{{"kind":{_str(kind)},"netns":{_str(where)},"t_us":'
        tail = (f',"node":{_str(node)}' if node else "") \
            + (f',"ifindex":{ifindex:d}' if ifindex else "") \
            + (f',"mark":{_str(f"{mark:#x}")}' if mark else "")
        pieces = self._hops[key] = (head, tail)
        return pieces

    def _detail(self, detail: str) -> str:
        piece = self._details.get(detail)
        if piece is None:
            if len(self._details) >= PIECES_KEPT:
                self._details.clear()
            piece = self._details[detail] = ',"detail":' + _str(detail)
        return piece

    def line(self, r: Request) -> str:
        """encode(r.to_json()), without building the dicts."""
        start, c = r.start_ns, r.client
        hops = []
        kept = self._hops
        for h in r.hops:
            key = (h.kind, h.where, h.node, h.ifindex, h.mark)
            head, tail = kept.get(key) or self._hop_pieces(key)
            s = head + _us(h.ts_ns - start) + tail
            if (b := h.before) is not None:
                s += ',"before":' + _str(f"{b[0]}:{b[1]} -> {b[2]}:{b[3]}")
            if (a := h.after) is not None:
                s += ',"after":' + _str(f"{a[0]}:{a[1]} -> {a[2]}:{a[3]}")
            if h.detail:
                s += self._detail(h.detail)
            hops.append(s + "}")
        backend = f'{{"addr":{_str(r.backend_addr)},"name":{_str(r.backend_name)}}}' \
            if r.backend_addr else "null"
        out = _HEAD % (
            r.id, _str(r.proto), _str(f"{c[0]}:{c[1]}"), _opt(r.client_name),
            _str(f"{c[2]}:{c[3]}"), backend, _opt(r.service), _opt(r.mode), _str(r.status),
            r.start_ns, _ms(r.reply_ns - start) if r.reply_ns else "null",
            _ms(r.end_ns - start) if r.end_ns else "null") + ",".join(hops) + "]"
        # What few requests have: the encoder on their own dicts.
        if r.missing:
            out += ',"incomplete":true,"missing":' + ENCODER.encode(list(r.missing))
        if r.verdict is not None:
            out += ',"verdict":' + ENCODER.encode(r.verdict.to_json())
        if r.resumed is not None:
            out += ',"resumed":' + ENCODER.encode(r.resumed.to_json(start))
        if r.dns is not None:
            out += ',"dns":' + ENCODER.encode(r.dns.to_json())
        return out + "}"
