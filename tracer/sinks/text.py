"""Requests as text blocks (summary line + hops) or as JSON lines (the public schema)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, TextIO

from tracer.dns_search import search_note
from tracer.events import Flow
from tracer.model import Hop, HopKind, Request, Status, Verdict
from tracer.sinks.hop_order import causal_hops
from tracer.sinks.json_line import JsonLines

_SUMMARY_SKIP = frozenset((HopKind.SEND, HopKind.ENTER_NODE, HopKind.ENTER_NETNS,
                           HopKind.BRIDGE, HopKind.REPLY, HopKind.DELIVER))
_DNAT, _LB, _SNAT, _MARK = HopKind.DNAT, HopKind.LB, HopKind.SNAT, HopKind.MARK
_DROP, _DNS, _VXLAN = HopKind.DROP, HopKind.DNS, HopKind.VXLAN
_SEND, _ENTER_NODE, _DELIVER = HopKind.SEND, HopKind.ENTER_NODE, HopKind.DELIVER
_QUIET_STATUS = frozenset((Status.OK, Status.OPEN))  # not said in the summary


def hop_action(h: Hop) -> str:
    """What the kernel did at this hop, in a few words."""
    # Compared with module names: an enum member read off its class costs a lookup (3.11).
    k = h.kind
    if k is _DNAT:
        return f"DNAT -> {h.after.dst}" if h.after else "DNAT"
    if k is _LB:
        extra = f" ({h.detail})" if h.detail else ""
        return f"LB -> {h.after.dst}{extra}" if h.after else "LB"
    if k is _SNAT:
        return f"SNAT {h.after.saddr}" if h.after else "SNAT"
    if k is _MARK:
        svc = f" = {h.detail}" if h.detail else ""
        return f"mark {h.mark:#x}{svc}"
    if k is _DROP:
        return f"DROP ({h.detail})"
    if k is _DNS:
        return f"DNS {h.detail}"
    if k is _VXLAN:
        # An observed crossing that went wrong says "sent over VXLAN ..." itself.
        return h.detail if "VXLAN" in h.detail else f"VXLAN {h.detail}".rstrip()
    return str(k)


def _flow(f: Flow) -> str:
    return f"{f[0]}:{f[1]} -> {f[2]}:{f[3]}"  # str(Flow) without the method call


# A hop line is its time, then where and what the kernel did (padded), then the tuples.
# %-formatting, not an f-string with format specs: half the time, the same text.
_TIME = "    %+9.3f ms"
_COLUMNS = "  %-16s %-28s "
# The action of a hop kind that the summary leaves out is the kind's own word.
_SKIP_ACTION = {k: str(k) for k in _SUMMARY_SKIP}

KEPT = 4096


@dataclass(slots=True)
class Kept:
    """What a sink keeps across requests, whose hops repeat the same few netns and rewrites.
    Bounded: unnamed netns ("netns:<inode>") and addresses churn on a long-running trace."""

    columns: dict[tuple[str, str], str] = field(default_factory=dict)  # (where, action) ->
    # A hop's action and its summary's form, by what hop_action() reads.
    actions: dict[tuple[object, ...], tuple[str, str]] = field(default_factory=dict)

    def bounded(self) -> Kept:
        if len(self.columns) >= KEPT:
            self.columns.clear()
        if len(self.actions) >= KEPT:
            self.actions.clear()
        return self


def _what(h: Hop, client: str, backend_addr: str) -> str:
    """The tuples a hop line ends with: the rewrite, or the client's or backend's address."""
    b, a = h.before, h.after
    if b is not None and a is not None:
        return f"{b[0]}:{b[1]} -> {b[2]}:{b[3]} => {a[0]}:{a[1]} -> {a[2]}:{a[3]}"
    k = h.kind
    if k is _SEND or k is _ENTER_NODE:
        return client
    return backend_addr if k is _DELIVER else ""


def _render(req: Request, hops: bool, kept: Kept | None = None) -> tuple[str, list[str]]:
    """The summary, and (hops) a line per hop, in one pass over the hops: this runs for every
    request a live trace shows. kept: a sink's pieces, kept across requests."""
    start, c = req.start_ns, req.client
    client = f"{c[0]}:{c[1]} -> {c[2]}:{c[3]}"
    backend_addr = req.backend_addr
    kept = kept.bounded() if kept is not None else Kept()
    columns, actions = kept.columns, kept.actions
    # The backend's own port redirect (Docker's REDIRECT in the task) shows in its address.
    deliver = [h.netns for h in req.hops if h.kind is _DELIVER]
    groups: dict[str, list[str]] = {}
    lines = []
    for h in causal_hops(req):
        kind, where = h.kind, h.where
        action = _SKIP_ACTION.get(kind)
        if action is None:
            a = h.after
            key = (kind, h.detail, h.mark, a[0], a[2], a[3]) if a is not None \
                else (kind, h.detail, h.mark)
            known = actions.get(key)
            if known is None:
                action = short = hop_action(h)
                if kind is _LB and h.detail:
                    short = action.replace(h.detail, h.detail.split(":")[0])
                known = actions[key] = (action, short)
            action, short = known
            if not (kind is _DNAT and h.netns in deliver):
                if (group := groups.get(where)) is None:
                    groups[where] = [short]
                else:
                    group.append(short)
        if hops:
            cols = columns.get((where, action))
            if cols is None:
                cols = columns[(where, action)] = _COLUMNS % (where, action)
            what = _what(h, client, backend_addr)
            line = _TIME % ((h.ts_ns - start) / 1e6) + cols + what
            lines.append(line if what else line.rstrip())
    who = f"{req.client_name} " if req.client_name else ""
    parts = [f"{who}{client}"]
    if req.resumed is not None:
        parts.append("mid-connection")
    parts += [f"{where}: {', '.join(actions)}" for where, actions in groups.items()]
    if backend_addr:
        name = req.backend_name or "backend"
        parts.append(f"{name} ({backend_addr})")
    if req.reply_ns:
        parts.append("reply %.2f ms" % ((req.reply_ns - start) / 1e6))
    dns = req.dns
    if req.status is Status.DNS_SEARCH and dns is not None:
        parts.append(f"{dns.rcode}, a search step: the resolver asked the next name")
    elif req.status is Status.DNS_FORWARDED and dns is not None:
        parts.append(f"{dns.rcode}, asked upstream for request #{dns.forwarded_for}: "
                     "its verdict covers this")
    elif req.status not in _QUIET_STATUS:
        # A failed DNS query says how: NXDOMAIN, SERVFAIL ...
        failed = dns.rcode if dns is not None and req.status is Status.DNS_FAILED else ""
        parts.append(failed if failed not in ("", "NOERROR") else str(req.status).upper())
    elif dns is not None and dns.tried:
        parts.append(search_note(dns))  # an answer found after failed names: how
    parts += req.missing
    return " | ".join(parts), lines


def summary(req: Request) -> str:
    """The request in one line: client, what each netns did, backend, reply time, fate."""
    return _render(req, hops=False)[0]


def hop_line(req: Request, h: Hop) -> str:
    action = _SKIP_ACTION.get(h.kind) or hop_action(h)
    what = _what(h, _flow(req.client), req.backend_addr)
    line = _TIME % ((h.ts_ns - req.start_ns) / 1e6) + _COLUMNS % (h.where, action) + what
    return line if what else line.rstrip()


def block(req: Request, hops: bool = True, kept: Kept | None = None) -> str:
    """`#id summary`, then (hops) a line per hop."""
    head, lines = _render(req, hops, kept)
    if req.verdict is not None:
        lines.insert(0, verdict_line(req.verdict))
    lines.insert(0, f"#{req.id} {head}")
    return "\n".join(lines)


def verdict_line(v: Verdict) -> str:
    """The one line under a failed request: why, where, the evidence and what to do."""
    where = f"{v.node} {v.netns}" if v.node and not v.netns.startswith(v.node) else v.netns
    return f"    verdict: {v.cause} in {where} ({v.hop}): {v.evidence}; {v.hint}"


class Sink(Protocol):
    def write(self, req: Request) -> None: ...

    def write_all(self, reqs: list[Request]) -> None:
        """Write a poll's requests with one flush (a flush is a system call)."""

    def close(self) -> None: ...


# Said once, on stderr, so the requests on stdout stay one block each.
TIMES_LEGEND = "hop times are ms since the request's first packet (a DNS answer the client " \
    "used before connecting is negative)"


class TextSink:
    def __init__(self, out: TextIO, hops: bool = True) -> None:
        self._out = out
        self._hops = hops
        self._kept = Kept()

    def write(self, req: Request) -> None:
        self.write_all([req])

    def write_all(self, reqs: list[Request]) -> None:
        if reqs:
            hops, kept = self._hops, self._kept
            self._out.write("".join([block(req, hops, kept) + "\n" for req in reqs]))
            self._out.flush()

    def close(self) -> None:
        self._out.flush()


class JsonSink:
    """One JSON object per request per line (schema: tracer.model.JSON_SCHEMA_VERSION)."""

    def __init__(self, out: TextIO) -> None:
        self._out = out
        self._lines = JsonLines()

    def write(self, req: Request) -> None:
        self.write_all([req])

    def write_all(self, reqs: list[Request]) -> None:
        if reqs:
            line = self._lines.line
            self._out.write("".join([line(r) + "\n" for r in reqs]))
            self._out.flush()

    def close(self) -> None:
        self._out.flush()
