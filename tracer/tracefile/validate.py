"""Checks on what a trace file says: every value read from a file is typed and bounded here.

A file is data from anywhere (a newer writer, a damaged disk, an attacker). Every check raises
ValueError naming the field, so the reader can report one line and skip the record.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import fields
from typing import Any, get_args

from tracer.enrich.history import KINDS, SNAPSHOT_VERSION
from tracer.enrich.names import AddrKind, AddrName, NetnsKind, NetnsName

U64 = (1 << 64) - 1
# CLOCK_MONOTONIC and wall clock nanoseconds are signed 64-bit in the kernel; bounding them
# keeps every derived time (wall = ts - mono + wall) inside what datetime and pcapng hold.
NS_MAX = (1 << 63) - 1
MAX_TEXT = 4096  # a kernel release, a netns or task name, a note: far below this
MAX_LIST = 1 << 20

_NETNS_KINDS = frozenset(get_args(NetnsKind))
_ADDR_KINDS = frozenset(get_args(AddrKind))
_NETNS_FIELDS = frozenset(f.name for f in fields(NetnsName))  # not __slots__: see names.py
_ADDR_FIELDS = frozenset(f.name for f in fields(AddrName))
# Key shapes of the names log, per kind (see tracer.enrich.topology.Topology).
_PAIR_KEYS = {"fwmarks": (int, int), "lb_index": (str, int), "ports": (str, int)}


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number a trace may hold")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text} is not a finite number")
    return value


def loads(raw: bytes) -> Any:
    """JSON from a file: NaN, Infinity and overflowing floats are refused (ValueError)."""
    return json.loads(raw, parse_constant=_reject_constant, parse_float=_finite_float)


def obj(value: Any, what: str) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise ValueError(f"{what} is not an object")
    return value


def integer(
    d: Mapping[str, Any], key: str, lo: int = 0, hi: int = U64, default: int | None = None
) -> int:
    """d[key] as an int within [lo, hi]; `default` when the key may be missing."""
    if key not in d and default is not None:
        return default
    value = d.get(key)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"field {key!r} is not an integer")
    if not lo <= value <= hi:
        raise ValueError(f"field {key!r} is out of range ({value})")
    return value


def text(d: Mapping[str, Any], key: str, default: str | None = None) -> str:
    if key not in d and default is not None:
        return default
    value = d.get(key)
    if not isinstance(value, str):
        raise ValueError(f"field {key!r} is not a string")
    if len(value) > MAX_TEXT:
        raise ValueError(f"field {key!r} is too long ({len(value)} characters)")
    return value


def texts(d: Mapping[str, Any], key: str) -> tuple[str, ...]:
    """An optional list of strings."""
    value = d.get(key, [])
    if not isinstance(value, list) or len(value) > MAX_LIST:
        raise ValueError(f"field {key!r} is not a list")
    return tuple(text({key: v}, key) for v in value)


def names_log(data: Any, *, snapshot: bool) -> None:
    """Check a topology record's names log (tracer.enrich.history) entry by entry.

    Only a snapshot must state the version: change records extend the snapshot before them.
    """
    d = obj(data, "topology data")
    if "changes" not in d:
        return  # not a names log: kept as it is, and never resolved
    if (snapshot or "version" in d) and d.get("version") != SNAPSHOT_VERSION:
        raise ValueError(f"names log version {d.get('version')!r} is not {SNAPSHOT_VERSION}")
    changes = d["changes"]
    if not isinstance(changes, list):
        raise ValueError("field 'changes' is not a list")
    for i, change in enumerate(changes):
        try:
            _change(change)
        except ValueError as err:
            raise ValueError(f"names log entry {i}: {err}") from None


def _change(change: Any) -> None:
    c = obj(change, "entry")
    integer(c, "t", 0, NS_MAX)
    text(c, "src")
    integer(c, "rank", 0, 1 << 16)
    kind = text(c, "kind")
    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}")
    _key(kind, c.get("key"))
    value = c.get("value")
    if value is None:
        return
    if kind in ("netns", "addrs"):
        _name_fields(kind, obj(value, "value"))
    else:
        text(c, "value")


def _key(kind: str, key: Any) -> None:
    if kind in _PAIR_KEYS:
        if not isinstance(key, list) or len(key) != 2:
            raise ValueError(f"{kind} key is not a pair")
        for part, want in zip(key, _PAIR_KEYS[kind], strict=True):
            if want is int:
                integer({"key": part}, "key")
            else:
                text({"key": part}, "key")
    elif kind == "addrs":
        text({"key": key}, "key")
    else:  # netns inode, VXLAN VNI
        integer({"key": key}, "key")


def _name_fields(kind: str, value: Mapping[str, Any]) -> None:
    allowed, kinds = (
        (_NETNS_FIELDS, _NETNS_KINDS) if kind == "netns" else (_ADDR_FIELDS, _ADDR_KINDS)
    )
    unknown = set(value) - allowed
    if unknown:
        raise ValueError(f"{kind} value has unknown fields {sorted(unknown)}")
    for name in value:
        if value[name] is not None:
            text(value, name)
    if kind == "netns":
        text(value, "name")
    if value.get("kind") not in kinds:
        raise ValueError(f"{kind} value has unknown kind {value.get('kind')!r}")
