"""The agent <-> collector stream: .swt frames (type, length, crc32, one zstd frame) over TLS.

Events, the header and names use the trace file's own record types and payloads, so a
collector writes what it receives into a .swt file unchanged. The records only a live
stream needs (handshake, clock pings, status) have types of their own, above the file's.
"""

from __future__ import annotations

import enum
import json
import socket
import ssl
from typing import Any

import numpy as np
import zstandard

from tracer.errors import RemoteError
from tracer.tracefile.format import (
    FRAME,
    MAX_FRAME_BYTES,
    RecordType,
    decode_events,
    decompress,
    encode_events,
    encode_json,
    frame,
    frame_crc,
    max_payload,
)

DEFAULT_PORT = 4791  # next to VXLAN's 4789 (Swarm's data path) and 4790 (VXLAN-GPE)
ZSTD_LEVEL = 1  # a stream favours the agent's CPU over bytes


class WireType(enum.IntEnum):
    """Stream-only records; never written into a trace file."""

    HELLO = 16  # agent -> collector: its nonce
    AUTH = 17  # collector -> agent: its nonce and proof; agent -> collector: its proof
    PING = 18  # collector -> agent: {"t1"} in the collector's clock
    PONG = 19  # agent -> collector: {"t1", "t2"}, t2 in the agent's clock
    STATUS = 20  # agent -> collector: {"now", "events", "lost", "dropped"} about 5 times a second


def json_frame(kind: int, obj: Any) -> bytes:
    return frame(kind, zstandard.ZstdCompressor(level=ZSTD_LEVEL).compress(encode_json(obj)))


def events_frame(events: np.ndarray) -> bytes:
    raw = encode_events(events)
    return frame(RecordType.EVENTS,
                 zstandard.ZstdCompressor(level=ZSTD_LEVEL).compress(raw.data))


def _recv_exact(sock: socket.socket | ssl.SSLSocket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("the other end closed the connection")
        buf += chunk
    return bytes(buf)


def read_frame(sock: socket.socket | ssl.SSLSocket) -> tuple[int, bytes]:
    """The next record's type and decompressed payload; RemoteError on a damaged stream."""
    head = _recv_exact(sock, FRAME.size)
    kind, _, _, length, crc = FRAME.unpack(head)
    if length > MAX_FRAME_BYTES:
        raise RemoteError(f"stream record of {length} bytes is implausible: not a swarmtrace "
                          "agent, or a damaged stream")
    payload = _recv_exact(sock, length)
    if frame_crc(head[:8], payload) != crc:
        raise RemoteError("stream record failed its checksum")
    try:
        return kind, decompress(payload, max_payload(kind))  # the same bounds as a file
    except zstandard.ZstdError as err:
        raise RemoteError(f"stream record does not decompress: {err}") from err


def read_json(sock: socket.socket | ssl.SSLSocket, expect: int) -> dict[str, Any]:
    kind, raw = read_frame(sock)
    if kind != expect:
        raise RemoteError(f"expected a {_name(expect)} record, got {_name(kind)}")
    obj = json.loads(raw)
    if not isinstance(obj, dict):
        raise RemoteError(f"{_name(expect)} record is not an object")
    return obj


def events_of(raw: bytes) -> np.ndarray:
    try:
        return decode_events(raw)
    except ValueError as err:
        raise RemoteError(f"agent sent events this swarmtrace cannot read: {err}") from err


def _name(kind: int) -> str:
    for enum_type in (WireType, RecordType):
        try:
            return enum_type(kind).name
        except ValueError:
            continue
    return f"type {kind}"
