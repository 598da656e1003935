"""Facts read from the running kernel's BTF: the names of its drop reasons.

enum skb_drop_reason changes between kernel versions, so a reason code only means something
with the table of the kernel that produced it; sources put that table in SourceInfo and
trace files keep it. The BTF is read directly (no bpftool): the wheel and the image run on
hosts that have none."""

from __future__ import annotations

import struct
from pathlib import Path

VMLINUX_BTF = Path("/sys/kernel/btf/vmlinux")
BTF_MAGIC = 0xEB9F
MAX_CORE_REASON = 1024
PREFIX = "SKB_DROP_REASON_"
ENUM, ENUM64 = 6, 19
# Bytes that follow a type's 12-byte header: fixed per kind, or per member (times vlen).
_FIXED = {1: 4, 3: 12, 14: 4, 17: 4}
_PER_MEMBER = {4: 12, 5: 12, 6: 8, 13: 8, 15: 12, 19: 12}


def drop_reasons(path: Path = VMLINUX_BTF) -> tuple[str, ...]:
    """Reason names indexed by code; empty when the kernel has no BTF or no such enum."""
    try:
        data = path.read_bytes()
        members = _enum_members(data, "skb_drop_reason")
    except (OSError, struct.error, ValueError):
        return ()
    # Codes above the core range are subsystem masks (SKB_DROP_REASON_SUBSYS_*), not reasons.
    names = {code: name.removeprefix(PREFIX) for name, code in members
             if name.startswith(PREFIX) and 0 <= code < MAX_CORE_REASON}
    return tuple(names.get(i, str(i)) for i in range(max(names, default=-1) + 1))


def _enum_members(data: bytes, enum_name: str) -> list[tuple[str, int]]:
    magic, _version, _flags, hdr_len = struct.unpack_from("<HBBI", data, 0)
    if magic != BTF_MAGIC:
        raise ValueError("not little-endian BTF")
    type_off, type_len, str_off, _str_len = struct.unpack_from("<IIII", data, 8)
    types, strings = hdr_len + type_off, hdr_len + str_off

    def name(off: int) -> str:
        return data[strings + off:data.index(b"\0", strings + off)].decode()

    pos, end = types, types + type_len
    while pos < end:
        name_off, info, _size = struct.unpack_from("<III", data, pos)
        kind, vlen = (info >> 24) & 0x1F, info & 0xFFFF
        pos += 12
        if kind in (ENUM, ENUM64) and name(name_off) == enum_name:
            step = _PER_MEMBER[kind]
            vals = [struct.unpack_from("<Ii" if kind == ENUM else "<II", data, pos + i * step)
                    for i in range(vlen)]
            return [(name(v[0]), v[1]) for v in vals]
        pos += _FIXED.get(kind, 0) + _PER_MEMBER.get(kind, 0) * vlen
    return []
