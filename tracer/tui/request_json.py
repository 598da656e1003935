"""Requests back from their public JSON form (Request.to_json()): fixtures, JSON-lines input."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tracer.events import Flow
from tracer.model import (
    JSON_SCHEMA_VERSION,
    DnsQuery,
    DnsResult,
    Hop,
    HopKind,
    Request,
    Resumed,
    Status,
    Verdict,
)


def parse_flow(text: str) -> Flow:
    """'10.0.0.2:5000 -> 10.0.0.9:80' as printed by str(Flow)."""
    src, _, dst = text.partition(" -> ")
    return Flow(*_endpoint(src), *_endpoint(dst))


def _endpoint(text: str) -> tuple[str, int]:
    addr, _, port = text.strip().rpartition(":")
    return addr, int(port)


def hop_from_json(d: dict[str, Any], start_ns: int) -> Hop:
    # The JSON keeps the netns name only, not its inode: inode 0 means "unknown".
    return Hop(
        kind=HopKind(d["kind"]),
        ts_ns=start_ns + round(float(d.get("t_us", 0)) * 1e3),
        netns=0,
        where=d.get("netns", ""),
        ifindex=int(d.get("ifindex", 0)),
        mark=int(d["mark"], 16) if d.get("mark") else 0,
        before=parse_flow(d["before"]) if d.get("before") else None,
        after=parse_flow(d["after"]) if d.get("after") else None,
        detail=d.get("detail", ""),
        node=d.get("node", ""),
    )


def request_from_json(d: dict[str, Any]) -> Request:
    """The inverse of Request.to_json(), up to netns inodes (not in the JSON)."""
    if d.get("v") != JSON_SCHEMA_VERSION:
        raise ValueError(f"request JSON version {d.get('v')!r}, expected {JSON_SCHEMA_VERSION}")
    start = int(d["start_ns"])
    backend = d.get("backend") or {}
    reply_ms, duration_ms = d.get("reply_ms"), d.get("duration_ms")
    return Request(
        id=int(d["id"]),
        proto=d["proto"],
        client=Flow(*_endpoint(d["client"]), *_endpoint(d["entry"])),
        start_ns=start,
        hops=[hop_from_json(h, start) for h in d.get("hops", [])],
        backend_addr=backend.get("addr", ""),
        backend_name=backend.get("name", ""),
        client_name=d.get("client_name") or "",
        service=d.get("service") or "",
        mode=d.get("mode") or "",
        status=Status(d["status"]),
        reply_ns=start + round(reply_ms * 1e6) if reply_ms is not None else 0,
        end_ns=start + round(duration_ms * 1e6) if duration_ms is not None else 0,
        verdict=Verdict(**d["verdict"]) if d.get("verdict") else None,
        resumed=_resumed(d.get("resumed"), start),
        dns=_dns(d.get("dns")),
    )


def _dns(d: dict[str, Any] | None) -> DnsResult | None:
    if d is None:
        return None
    return DnsResult(d["name"], d["qtype"], d["rcode"], tuple(d["addrs"]),
                     tuple(DnsQuery(int(q["id"]), q["name"], q["rcode"]) for q in d["tried"]),
                     int(d.get("forwarded_for", 0)))


def _resumed(d: dict[str, Any] | None, start_ns: int) -> Resumed | None:
    if d is None:
        return None
    age = d.get("age_ms")
    return Resumed(int(d.get("opened_by") or 0),
                   start_ns - round(age * 1e6) if age is not None else 0)


def load_requests(path: Path) -> tuple[list[Request], dict[str, Any] | None]:
    """A JSON file {"topology": {...}, "requests": [...]} or a bare list of requests."""
    data = json.loads(path.read_text())
    if isinstance(data, list):
        return [request_from_json(d) for d in data], None
    return [request_from_json(d) for d in data["requests"]], data.get("topology")
