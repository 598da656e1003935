"""The event schema: a mirror of bpf/event.h as a numpy dtype, and its Python view."""

from __future__ import annotations

import enum
import ipaddress
import socket
from collections.abc import Iterator
from functools import partial
from typing import NamedTuple

import numpy as np

# Must equal ST_EVENT_VERSION in bpf/event.h (checked by tests/test_event_layout.py).
EVENT_VERSION = 4
# Older layouts this version still decodes (same record; version 2 added the VXLAN points,
# version 3 drops of VXLAN packets, F_ENCAP, version 4 the DNS rcode, question type and
# responses without an address, F_NO_ADDR: zeros in older DNS events read as NOERROR, A).
READABLE_EVENT_VERSIONS = (1, 2, 3, 4)


class Point(enum.IntEnum):
    """Where in the kernel an event was taken (enum st_point)."""

    NF_PRE = 1
    NF_IN = 2
    NF_FWD = 3
    NF_OUT = 4
    NF_POST = 5
    RX = 6
    TX = 7
    DROP = 8
    LB = 9
    LB_SCHED = 10
    LB_XMIT = 11
    NAT = 12
    DNS = 13
    VXLAN_OUT = 14
    VXLAN_IN = 15

    @property
    def label(self) -> str:
        return _POINT_LABELS[self]


_POINT_LABELS = {
    Point.NF_PRE: "prerouting",
    Point.NF_IN: "input",
    Point.NF_FWD: "forward",
    Point.NF_OUT: "output",
    Point.NF_POST: "postrouting",
    Point.RX: "rx",
    Point.TX: "tx",
    Point.DROP: "drop",
    Point.LB: "lb",
    Point.LB_SCHED: "lb-sched",
    Point.LB_XMIT: "lb-xmit",
    Point.NAT: "nat",
    Point.DNS: "dns",
    Point.VXLAN_OUT: "vxlan-out",
    Point.VXLAN_IN: "vxlan-in",
}

# st_event.flags
F_CT = 0x01
F_REPLY_DIR = 0x02
F_BRIDGED = 0x04
F_LOCAL = 0x08
F_ENCAP = 0x10  # a DROP of a VXLAN packet: pkt = its inner tuple, orig = the outer one
F_NO_ADDR = 0x20  # a DNS event of a response without an A record (an error, no answer)

# conntrack status bits (include/uapi/linux/netfilter/nf_conntrack_common.h)
IPS_SRC_NAT = 0x10
IPS_DST_NAT = 0x20

TCP_FIN, TCP_SYN, TCP_RST, TCP_PSH, TCP_ACK = 0x01, 0x02, 0x04, 0x08, 0x10

_TUPLE = [("saddr", "<u4"), ("daddr", "<u4"), ("sport", "<u2"), ("dport", "<u2")]
_TUPLE_DTYPE = np.dtype(_TUPLE)

# Field order, sizes and offsets exactly as struct st_event (little-endian host).
EVENT_DTYPE = np.dtype(
    [
        ("ts_ns", "<u8"),
        ("skb", "<u8"),
        ("netns", "<u4"),
        ("ifindex", "<u4"),
        ("mark", "<u4"),
        ("aux", "<u4"),
        ("ct", "<u4"),
        ("ct_status", "<u2"),
        ("point", "u1"),
        ("proto", "u1"),
        ("tcp_flags", "u1"),
        ("ctinfo", "u1"),
        ("flags", "u1"),
        ("pad", "u1"),
        ("pkt", _TUPLE),
        ("orig", _TUPLE),
        ("reply", _TUPLE),
    ]
)
EVENT_SIZE = EVENT_DTYPE.itemsize  # 80


class Flow(NamedTuple):
    """An IPv4 address/port 4-tuple in host order (ports) and dotted strings (addresses)."""

    saddr: str
    sport: int
    daddr: str
    dport: int

    # By index, not by field name: these run for every hop line and JSON hop, and a
    # NamedTuple's named fields are properties (a call each).
    @property
    def src(self) -> str:
        return f"{self[0]}:{self[1]}"

    @property
    def dst(self) -> str:
        return f"{self[2]}:{self[3]}"

    def reversed(self) -> Flow:
        return _new_flow(Flow, (self[2], self[3], self[0], self[1]))

    def __str__(self) -> str:
        return f"{self[0]}:{self[1]} -> {self[2]}:{self[3]}"


# tuple.__new__ skips the NamedTuple's generated __new__ (argument binding): about half the cost.
_new_flow = tuple.__new__


def _ip(raw: int) -> str:
    # Addresses are stored as the kernel holds them (network order) read as little-endian u32.
    return socket.inet_ntoa(int(raw).to_bytes(4, "little"))


def ip_to_raw(addr: str) -> int:
    """An address as the kernel stores it (network order bytes read as little-endian u32)."""
    return int.from_bytes(ipaddress.IPv4Address(addr).packed, "little")


def port_to_raw(port: int) -> int:
    return int.from_bytes(port.to_bytes(2, "big"), "little")


class Event(NamedTuple):
    """One kernel event, decoded. A NamedTuple, not a dataclass: replay decodes millions of
    these, and tuple construction is several times cheaper than a frozen dataclass's."""

    ts_ns: int
    skb: int
    netns: int
    ifindex: int
    mark: int
    aux: int
    ct: int
    ct_status: int
    point: Point
    proto: int
    tcp_flags: int
    ctinfo: int
    flags: int
    pkt: Flow
    orig: Flow | None
    reply: Flow | None

    @property
    def has_ct(self) -> bool:
        return bool(self.flags & F_CT)

    @property
    def reply_dir(self) -> bool:
        return bool(self.flags & F_REPLY_DIR)


_POINTS = {int(p): p for p in Point}
# Built from a ready tuple by one C call each (a NamedTuple's __new__ binds arguments in Python).
_flow_of = partial(tuple.__new__, Flow)
_event_of = partial(tuple.__new__, Event)
_VXLAN_POINTS = (Point.VXLAN_OUT, Point.VXLAN_IN)


class _Memo:
    """Decoded tuples by their 12 raw bytes, and address strings: a trace holds few distinct
    tuples and addresses, many events. Kept across batches (a request's events span several),
    emptied when it grows past a bound."""

    LIMIT = 1 << 16

    def __init__(self) -> None:
        self.ips: dict[int, str] = {}
        self.flows: dict[bytes, Flow] = {}

    def ip(self, raw: int) -> str:
        s = self.ips.get(raw)
        if s is None:
            s = self.ips[raw] = _ip(raw)
        return s

    def add_flows(self, keys: list[bytes]) -> None:
        """Decode distinct tuples not seen before (their raw bytes) all at once, and keep them."""
        cols = np.frombuffer(b"".join(keys), dtype=_TUPLE_DTYPE)
        saddrs, daddrs = cols["saddr"].tolist(), cols["daddr"].tolist()
        ips = self.ips
        for raw in {*saddrs, *daddrs} - ips.keys():
            ips[raw] = _ip(raw)
        flows = map(_flow_of, zip(map(ips.__getitem__, saddrs),
                                  cols["sport"].byteswap().tolist(),
                                  map(ips.__getitem__, daddrs),
                                  cols["dport"].byteswap().tolist(), strict=True))
        self.flows.update(zip(keys, flows, strict=True))

    def trim(self) -> None:
        if len(self.ips) > self.LIMIT:
            self.ips.clear()
        if len(self.flows) > self.LIMIT:
            self.flows.clear()


_memo = _Memo()


# ST_DNS: the query name's first bytes sit from orig.daddr to the end of the record.
_DNS_NAME_OFFSET = 60  # offsetof(struct st_event, orig.daddr), checked by test_event_layout


def dns_name(wire: bytes) -> str:
    """A DNS name from its wire-format labels (cut short names end with '...')."""
    labels, i = [], 0
    while i < len(wire) and wire[i]:
        n = wire[i]
        if n & 0xC0:
            break
        label = wire[i + 1 : i + 1 + n]
        labels.append(label.decode("ascii", "replace"))
        if len(label) < n:
            labels[-1] += "..."
            break
        i += 1 + n
    return ".".join(labels)


_TUPLE_SIZE = 12  # struct st_tuple
_TUPLES_AT = 44  # offsetof(struct st_event, pkt); orig and reply follow to the end


_MIX = np.uint64(0x9E3779B97F4A7C15)  # 2**64 / golden ratio: spreads the ports over 64 bits


def _flows(records: np.ndarray) -> list[list[Flow]]:
    """pkt, orig and reply of every record as Flow objects. A batch holds few distinct tuples
    (a request's events repeat them): numpy finds the distinct ones, Python looks each up (or
    decodes it) once by its raw bytes, and numpy hands the Flow objects back out per record."""
    n = len(records)
    raw = np.ascontiguousarray(records.view(np.uint8).reshape(n, EVENT_SIZE)[:, _TUPLES_AT:])
    words = raw.view("<u4").reshape(n * 3, 3)  # per tuple: saddr, daddr, both ports
    addrs = (words[:, 0].astype(np.uint64) << 32) | words[:, 1]
    ports = words[:, 2]
    # Sorted by a 64-bit mix of the 96 bits: equal tuples end up side by side. Two tuples
    # that share a mix may interleave; each run of equal ones then counts as distinct, which
    # costs a lookup, never a wrong tuple (a run is equal in all 96 bits).
    order = np.argsort(addrs ^ (ports.astype(np.uint64) * _MIX))
    addrs, ports = addrs[order], ports[order]
    first = np.empty(len(order), dtype=bool)
    first[0] = True
    first[1:] = (addrs[1:] != addrs[:-1]) | (ports[1:] != ports[:-1])
    which = np.empty(len(order), dtype=np.intp)  # each tuple's place among the distinct ones
    which[order] = np.cumsum(first) - 1
    keys = raw.view(f"V{_TUPLE_SIZE}").reshape(n * 3)[order[first]].tolist()
    known = _memo.flows
    new = set(keys).difference(known)
    if new:
        _memo.add_flows(list(new))
    distinct = np.fromiter(map(known.__getitem__, keys), dtype=object, count=len(keys))
    per_record = distinct[which].reshape(n, 3)
    return [per_record[:, k].tolist() for k in range(3)]


# An Event's fields as a plain tuple: what the correlator's hot loop reads (building the
# NamedTuple costs a call per event; only the few events kept by a request become one).
EventRow = tuple[int, int, int, int, int, int, int, int, Point, int, int, int, int, Flow,
                 Flow | None, Flow | None]


def decode(records: np.ndarray) -> list[Event]:
    """Decode an array of EVENT_DTYPE records (vectorised, each distinct tuple decoded once)."""
    return list(map(_event_of, event_rows(records)))


def as_event(row: EventRow) -> Event:
    """A row as its Event: for the few events that a request keeps or that have no tuples."""
    return _event_of(row)


def event_rows(records: np.ndarray) -> Iterator[EventRow]:
    """decode() without the Event objects: each record's fields as a plain tuple, built one
    at a time (a loop that unpacks each at once gets the same tuple object back every time)."""
    if not len(records):
        return iter(())
    _memo.trim()
    cols = [records[f].tolist() for f in ("ts_ns", "skb", "netns", "ifindex", "mark", "aux",
                                          "ct", "ct_status")]
    raw_points = records["point"].tolist()
    points = list(map(_POINTS.get, raw_points, raw_points))
    flags = records["flags"].tolist()
    cols += [points] + [records[f].tolist() for f in ("proto", "tcp_flags", "ctinfo")]
    pkts, origs_, replies_ = _flows(records)
    origs: list[Flow | None] = origs_  # type: ignore[assignment]
    replies: list[Flow | None] = replies_  # type: ignore[assignment]
    # orig and reply are None where the event had no conntrack entry.
    # VXLAN events carry the inner tuple in orig without a conntrack entry, a dropped VXLAN
    # packet the outer one.
    raw = records["point"]
    no_ct = ((records["flags"] & (F_CT | F_ENCAP)) == 0) & (raw != Point.VXLAN_OUT) & \
        (raw != Point.VXLAN_IN)
    for i in np.flatnonzero(no_ct).tolist():
        origs[i] = replies[i] = None
    # DNS answer events carry the answered address ("" for a response without one) and the
    # query name where tuples usually are.
    for i in np.flatnonzero(raw == Point.DNS).tolist():
        name = dns_name(records[i : i + 1].tobytes()[_DNS_NAME_OFFSET:])
        addr = "" if flags[i] & F_NO_ADDR else _memo.ip(int(records["orig"]["saddr"][i]))
        origs[i], replies[i] = Flow(addr, 0, name, 0), None
    return zip(*cols, flags, pkts, origs, replies, strict=True)
