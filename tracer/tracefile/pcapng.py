"""pcapng export: one interface per (node, netns, ifindex), one packet per event, hop comments.

Events hold headers only, so each packet is an IPv4 + TCP/UDP header synthesised from the
event's tuple as seen at that hop: successive packets show every DNAT/SNAT rewrite. A plain
`struct` writer: measured 100x faster than python-pcapng and Wireshark reads it directly.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

from tracer import __version__
from tracer.enrich.names import Names
from tracer.errors import TraceFileError
from tracer.events import EVENT_DTYPE, F_CT, IPS_DST_NAT, IPS_SRC_NAT, Point
from tracer.tracefile.format import TraceHeader
from tracer.tracefile.reader import open_trace

LINKTYPE_RAW = 101  # packets start with the IPv4 header
_BOM = 0x1A2B3C4D
_SHB, _IDB, _EPB = 0x0A0D0D0A, 0x00000001, 0x00000006
_OPT_END, _OPT_COMMENT = 0, 1
_SHB_OS, _SHB_USERAPPL = 3, 4
_IF_NAME, _IF_DESCRIPTION, _IF_TSRESOL = 2, 3, 9
_EPB_FLAGS = 2
INBOUND, OUTBOUND = 1, 2  # epb_flags direction bits

_POINT_VALUES = frozenset(int(p) for p in Point)
_INBOUND_POINTS = {Point.RX, Point.NF_PRE, Point.NF_IN}
_OUTBOUND_POINTS = {Point.TX, Point.NF_OUT, Point.NF_POST}
_IP_HDR = struct.Struct("!BBHHHBBH4s4s")
_TCP_HDR = struct.Struct("!2s2sIIBBHHH")
_UDP_HDR = struct.Struct("!2s2sHH")


def _option(code: int, value: bytes) -> bytes:
    pad = -len(value) % 4
    return struct.pack("<HH", code, len(value)) + value + b"\0" * pad


def _options(opts: list[tuple[int, bytes]]) -> bytes:
    if not opts:
        return b""
    return b"".join(_option(c, v) for c, v in opts) + struct.pack("<HH", _OPT_END, 0)


def _block(kind: int, body: bytes) -> bytes:
    total = 12 + len(body)
    return struct.pack("<II", kind, total) + body + struct.pack("<I", total)


class PcapngWriter:
    """Section header, interface descriptions and enhanced packet blocks, nanosecond times."""

    def __init__(self, out: BinaryIO, *, os_desc: str = "") -> None:
        self._out = out
        opts = [(_SHB_USERAPPL, f"swarmtrace {__version__}".encode())]
        if os_desc:
            opts.append((_SHB_OS, os_desc.encode()))
        body = struct.pack("<IHHq", _BOM, 1, 0, -1) + _options(opts)
        out.write(_block(_SHB, body))
        self.interfaces = 0

    def interface(self, name: str, description: str = "") -> int:
        """Add an interface (raw IPv4, ns timestamps); returns its id for packet()."""
        opts = [(_IF_NAME, name.encode()), (_IF_TSRESOL, b"\x09")]
        if description:
            opts.append((_IF_DESCRIPTION, description.encode()))
        body = struct.pack("<HHI", LINKTYPE_RAW, 0, 0) + _options(opts)
        self._out.write(_block(_IDB, body))
        self.interfaces += 1
        return self.interfaces - 1

    def packet(
        self, interface: int, ts_ns: int, data: bytes, *, direction: int = 0, comment: str = ""
    ) -> None:
        opts: list[tuple[int, bytes]] = []
        if comment:
            opts.append((_OPT_COMMENT, comment.encode()))
        if direction:
            opts.append((_EPB_FLAGS, struct.pack("<I", direction)))
        ts = max(ts_ns, 0)
        head = struct.pack("<IIIII", interface, ts >> 32, ts & 0xFFFFFFFF, len(data), len(data))
        body = head + data + b"\0" * (-len(data) % 4) + _options(opts)
        self._out.write(_block(_EPB, body))


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def synth_packet(
    proto: int, saddr: bytes, daddr: bytes, sport: bytes, dport: bytes, tcp_flags: int, ip_id: int
) -> bytes:
    """IPv4 + TCP/UDP headers (no payload) with valid checksums; addresses/ports wire order."""
    if proto == 6:
        l4 = _TCP_HDR.pack(sport, dport, 0, 0, 5 << 4, tcp_flags, 65535, 0, 0)
    elif proto == 17:
        l4 = _UDP_HDR.pack(sport, dport, 8, 0)  # checksum 0: "none" is legal for UDP/IPv4
    else:
        l4 = b""
    total = 20 + len(l4)
    if proto == 6:
        pseudo = saddr + daddr + struct.pack("!BBH", 0, proto, len(l4))
        csum = _checksum(pseudo + l4)
        l4 = l4[:16] + struct.pack("!H", csum) + l4[18:]
    ip = _IP_HDR.pack(0x45, 0, total, ip_id, 0x4000, 64, proto, 0, saddr, daddr)
    ip = ip[:10] + struct.pack("!H", _checksum(ip)) + ip[12:]
    return ip + l4


@dataclass(frozen=True, slots=True)
class _Place:
    node: str
    netns: str
    task: str
    service: str


class _Namer:
    """Names per netns/mark/address, looked up once at first sight (they rarely change)."""

    def __init__(self, names: Names | None, header: TraceHeader) -> None:
        self._names = names
        self._node = header.nodes[0] if len(header.nodes) == 1 else ""
        self._places: dict[int, _Place] = {}
        self._marks: dict[tuple[int, int], str] = {}
        self._addrs: dict[bytes, str] = {}

    def place(self, inode: int, ts: int) -> _Place:
        p = self._places.get(inode)
        if p is None:
            ns = self._names.netns(inode, ts) if self._names else None
            if ns is None:
                p = _Place(self._node, f"netns:{inode}", "", "")
            else:
                p = _Place(ns.node or self._node, ns.name, ns.task or "", ns.service or "")
            self._places[inode] = p
        return p

    def mark_service(self, inode: int, mark: int, ts: int) -> str:
        key = (inode, mark)
        if key not in self._marks:
            svc = self._names.fwmark(inode, mark, ts) if self._names else None
            self._marks[key] = svc or ""
        return self._marks[key]

    def addr(self, raw: bytes, ts: int) -> str:
        if raw not in self._addrs:
            a = self._names.addr(".".join(map(str, raw)), ts) if self._names else None
            self._addrs[raw] = a.label if a is not None and (a.task or a.service) else ""
        return self._addrs[raw]


def _tuple_str(t: tuple[int, int, int, int]) -> str:
    s, d = t[0].to_bytes(4, "little"), t[1].to_bytes(4, "little")
    sp, dp = int.from_bytes(t[2].to_bytes(2, "little")), int.from_bytes(t[3].to_bytes(2, "little"))
    return f"{'.'.join(map(str, s))}:{sp} > {'.'.join(map(str, d))}:{dp}"


def _hop_comment(rec: tuple, place: _Place, namer: _Namer) -> str:  # type: ignore[type-arg]
    ts, skb, inode, ifindex, mark, _, _, ct_status, point, _, _, _, flags, _, pkt, orig, reply = rec
    label = Point(point).label if point in _POINT_VALUES else f"point{point}"
    parts = [place.node, place.netns, label]
    if ifindex:
        parts.append(f"if{ifindex}")
    if mark:
        svc = namer.mark_service(inode, mark, ts)
        parts.append(f"mark {mark:#x}" + (f" service {svc}" if svc else ""))
    if flags & F_CT:
        if ct_status & IPS_DST_NAT:
            parts.append(
                f"dnat {_tuple_str(orig).split(' > ')[1]} -> {_tuple_str(reply).split(' > ')[0]}"
            )
        if ct_status & IPS_SRC_NAT:
            parts.append(
                f"snat {_tuple_str(orig).split(' > ')[0]} -> {_tuple_str(reply).split(' > ')[1]}"
            )
    if place.service:
        parts.append(f"service {place.service}")
    task = place.task or namer.addr(pkt[1].to_bytes(4, "little"), ts)
    if task:
        parts.append(f"task {task}")
    parts.append(f"skb {skb:#x}")
    return " ".join(p for p in parts if p)


def write_pcapng(
    trace: str | os.PathLike[str], out_path: str | os.PathLike[str], names: Names | None
) -> int:
    """Export every event of `trace` as a packet; returns the number of packets written."""
    count = 0
    interfaces: dict[tuple[str, int, int], int] = {}
    with open_trace(trace) as reader:
        header = reader.header
        namer = _Namer(names, header)
        try:
            out = open(Path(out_path), "wb")  # noqa: SIM115 (closed below)
        except OSError as err:
            raise TraceFileError(f"cannot write {out_path}: {err.strerror}") from err
        with out:
            w = PcapngWriter(out, os_desc=f"Linux {header.kernel}")
            for events in reader.events():
                count += _write_chunk(w, events, header, namer, interfaces)
    return count


def _write_chunk(
    w: PcapngWriter,
    events: np.ndarray,
    header: TraceHeader,
    namer: _Namer,
    interfaces: dict[tuple[str, int, int], int],
) -> int:
    assert events.dtype == EVENT_DTYPE
    for rec in events.tolist():
        ts, skb, inode, ifindex = rec[0], rec[1], rec[2], rec[3]
        point, proto, tcp_flags, pkt = rec[8], rec[9], rec[10], rec[14]
        place = namer.place(inode, ts)
        key = (place.node, inode, ifindex)
        if_id = interfaces.get(key)
        if if_id is None:
            where = f"{place.node}/{place.netns}" if place.node else place.netns
            if_id = w.interface(f"{where}/if{ifindex}", f"netns inode {inode}, ifindex {ifindex}")
            interfaces[key] = if_id
        data = synth_packet(
            proto,
            pkt[0].to_bytes(4, "little"),
            pkt[1].to_bytes(4, "little"),
            pkt[2].to_bytes(2, "little"),
            pkt[3].to_bytes(2, "little"),
            tcp_flags,
            skb >> 8 & 0xFFFF,  # the same skb keeps the same IP id: packets line up hop by hop
        )
        direction = (
            INBOUND if point in _INBOUND_POINTS else OUTBOUND if point in _OUTBOUND_POINTS else 0
        )
        w.packet(
            if_id,
            header.wall_ns(ts),
            data,
            direction=direction,
            comment=_hop_comment(rec, place, namer),
        )
    return len(events)
