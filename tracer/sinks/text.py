"""Requests as text blocks (summary line + hops) or as JSON lines (the public schema)."""

from __future__ import annotations

import json
from typing import Protocol, TextIO

from tracer.model import Hop, HopKind, Request, Status, Verdict

_SUMMARY_SKIP = (HopKind.SEND, HopKind.ENTER_NODE, HopKind.ENTER_NETNS, HopKind.BRIDGE,
                 HopKind.REPLY, HopKind.DELIVER)


def hop_action(h: Hop) -> str:
    """What the kernel did at this hop, in a few words."""
    svc = f" = {h.detail}" if h.detail and h.kind == HopKind.MARK else ""
    match h.kind:
        case HopKind.DNAT:
            return f"DNAT -> {h.after.dst}" if h.after else "DNAT"
        case HopKind.LB:
            extra = f" ({h.detail})" if h.detail else ""
            return f"LB -> {h.after.dst}{extra}" if h.after else "LB"
        case HopKind.SNAT:
            return f"SNAT {h.after.saddr}" if h.after else "SNAT"
        case HopKind.MARK:
            return f"mark {h.mark:#x}{svc}"
        case HopKind.DROP:
            return f"DROP ({h.detail})"
        case HopKind.DNS:
            return f"DNS {h.detail}"
        case HopKind.VXLAN:
            return f"VXLAN {h.detail}".rstrip()
        case _:
            return str(h.kind)


def summary(req: Request) -> str:
    who = f"{req.client_name} " if req.client_name else ""
    parts = [f"{who}{req.client.src} -> {req.client.dst}"]
    groups: dict[str, list[str]] = {}
    # The backend's own port redirect (Docker's REDIRECT in the task) shows in its address.
    deliver = {h.netns for h in req.hops if h.kind == HopKind.DELIVER}
    for h in req.hops:
        if h.kind in _SUMMARY_SKIP or (h.kind == HopKind.DNAT and h.netns in deliver):
            continue
        action = hop_action(h)
        if h.kind == HopKind.LB and h.detail:
            action = action.replace(h.detail, h.detail.split(":")[0])
        groups.setdefault(h.where, []).append(action)
    parts += [f"{where}: {', '.join(actions)}" for where, actions in groups.items()]
    if req.backend_addr:
        name = req.backend_name or "backend"
        parts.append(f"{name} ({req.backend_addr})")
    if req.reply_ms is not None:
        parts.append(f"reply {req.reply_ms:.2f} ms")
    if req.status not in (Status.OK, Status.OPEN):
        parts.append(str(req.status).upper())
    return " | ".join(parts)


def hop_line(req: Request, h: Hop) -> str:
    t = (h.ts_ns - req.start_ns) / 1e6
    what = ""
    if h.before is not None and h.after is not None:
        what = f"{h.before} => {h.after}"
    elif h.kind in (HopKind.SEND, HopKind.ENTER_NODE):
        what = str(req.client)
    elif h.kind == HopKind.DELIVER:
        what = req.backend_addr
    action = hop_action(h) if h.kind not in _SUMMARY_SKIP else str(h.kind)
    return f"    {t:+9.3f} ms  {h.where:<16} {action:<28} {what}".rstrip()


def verdict_line(v: Verdict) -> str:
    """The one line under a failed request: why, where, the evidence and what to do."""
    where = f"{v.node} {v.netns}" if v.node and not v.netns.startswith(v.node) else v.netns
    return f"    verdict: {v.cause} in {where} ({v.hop}): {v.evidence}; {v.hint}"


class Sink(Protocol):
    def write(self, req: Request) -> None: ...

    def close(self) -> None: ...


class TextSink:
    def __init__(self, out: TextIO, hops: bool = True) -> None:
        self._out = out
        self._hops = hops

    def write(self, req: Request) -> None:
        lines = [f"#{req.id} {summary(req)}"]
        if req.verdict is not None:
            lines.append(verdict_line(req.verdict))
        if self._hops:
            lines += [hop_line(req, h) for h in req.hops]
        self._out.write("\n".join(lines) + "\n")
        self._out.flush()

    def close(self) -> None:
        self._out.flush()


class JsonSink:
    """One JSON object per request per line (schema: tracer.model.JSON_SCHEMA_VERSION)."""

    def __init__(self, out: TextIO) -> None:
        self._out = out

    def write(self, req: Request) -> None:
        self._out.write(json.dumps(req.to_json(), separators=(",", ":")) + "\n")
        self._out.flush()

    def close(self) -> None:
        self._out.flush()
