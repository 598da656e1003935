"""Requests and their hops: what correlation produces and every sink shows."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

from tracer.events import Flow

# Version of the JSON object per request (`trace --json`, `replay --json`); bump on change.
JSON_SCHEMA_VERSION = 1


class HopKind(enum.StrEnum):
    SEND = "send"  # left a client socket (LOCAL_OUT)
    ENTER_NODE = "enter-node"  # first netns of the node the request reached
    ENTER_NETNS = "enter-netns"  # crossed into another netns
    BRIDGE = "bridge"  # bridged frame (br_netfilter hook on a bridge port)
    DNAT = "dnat"  # destination rewritten (iptables DNAT, REDIRECT)
    MARK = "mark"  # fwmark set (mangle MARK): picks a load-balancer service
    LB = "lb"  # load balancer chose a real server (IPVS or its stand-in)
    SNAT = "snat"  # source rewritten (masquerade)
    VXLAN = "vxlan"  # crossed nodes over the overlay
    DELIVER = "deliver"  # reached the backend's netns
    REPLY = "reply"  # first packet back to the client
    DROP = "drop"  # the kernel dropped it, with a reason
    DNS = "dns"  # a DNS answer: the addresses in order, TTL; or the answer a connection used


# The last word of an observed VXLAN hop's raw detail (before enrichment words it): which
# end of the crossing saw the packet, where it left or where it arrived.
VXLAN_OUT, VXLAN_IN = "out", "in"


class Status(enum.StrEnum):
    OPEN = "open"  # still in flight
    OK = "ok"  # reached a backend and got a reply
    NO_REPLY = "no-reply"  # reached a backend, no reply seen before it ended/timed out
    REFUSED = "refused"  # RST from the backend side
    DROPPED = "dropped"
    UNROUTED = "unrouted"  # never reached a backend
    DNS_FAILED = "dns-failed"  # a DNS query answered without an address (NXDOMAIN ...)
    # A query answered without an address after which the resolver asked the next name of the
    # same lookup (a search-domain expansion, or the bare name): a step, not a failure.
    DNS_SEARCH = "dns-search"
    # A failed query a server (Docker DNS) asked upstream on behalf of a failed query of a
    # client's lookup: part of that lookup, whose verdict covers it (DnsResult.forwarded_for).
    DNS_FORWARDED = "dns-forwarded"


# A value: nothing changes a hop once built. Not frozen all the same: about 20 are built per
# request on the live path, and a frozen dataclass's __init__ costs five times as much.
@dataclass(slots=True)
class Hop:
    kind: HopKind
    ts_ns: int
    netns: int  # netns inode
    where: str  # netns name as resolved by enrichment ("ingress_sbox"), or "netns:<inode>"
    ifindex: int = 0
    mark: int = 0
    before: Flow | None = None  # the tuple before a rewrite (DNAT/SNAT/LB)
    after: Flow | None = None  # the tuple after it
    detail: str = ""  # drop reason, service of a mark, "IPVS stand-in", VNI ...
    node: str = ""

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {"kind": str(self.kind), "netns": self.where, "t_us": 0}
        if self.node:
            d["node"] = self.node
        if self.ifindex:
            d["ifindex"] = self.ifindex
        if self.mark:
            d["mark"] = f"{self.mark:#x}"
        if self.before is not None:
            d["before"] = str(self.before)
        if self.after is not None:
            d["after"] = str(self.after)
        if self.detail:
            d["detail"] = self.detail
        return d


@dataclass(frozen=True, slots=True)
class Verdict:
    """Why a request is not ok (tracer/diagnose/verdict.py): where it failed and what to do."""

    node: str  # "" when the netns belongs to no known node (the netns lab)
    netns: str  # the netns name as its hops show it
    hop: str  # the kind of the hop where it failed ("drop", "lb", "deliver", "dns", ...)
    cause: str  # a short, stable name: "forwarding-off", "stale-backend", "refused", ...
    evidence: str  # the facts from the trace that show it
    hint: str  # what to check or run, with the moby issue it matches

    def to_json(self) -> dict[str, str]:
        return {"node": self.node, "netns": self.netns, "hop": self.hop, "cause": self.cause,
                "evidence": self.evidence, "hint": self.hint}


@dataclass(frozen=True, slots=True)
class DnsQuery:
    """An earlier query of the same lookup: the resolver tried this name first."""

    id: int  # its request
    name: str
    rcode: str

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "rcode": self.rcode}


@dataclass(frozen=True, slots=True)
class DnsResult:
    """What a DNS query (a request to port 53) was answered (tracer/dns_join.py)."""

    name: str  # the name asked, its first 20 bytes on the wire ("..." when cut)
    qtype: str  # "A", "AAAA", ...: the question of the response that decided it
    rcode: str  # "NOERROR", "NXDOMAIN", "SERVFAIL", ...
    addrs: tuple[str, ...]  # its A records, in order
    # The lookup's earlier queries, oldest first: a resolver tries a name and its
    # search-domain expansions (resolv.conf `search`) one after the other until one answers.
    tried: tuple[DnsQuery, ...] = ()
    forwarded_for: int = 0  # a dns-forwarded query's: the request it was asked upstream for

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "qtype": self.qtype, "rcode": self.rcode,
               "addrs": list(self.addrs), "tried": [q.to_json() for q in self.tried]}
        if self.forwarded_for:
            out["forwarded_for"] = self.forwarded_for
        return out


@dataclass(frozen=True, slots=True)
class Resumed:
    """A request that starts in the middle of a TCP connection: a packet of it was dropped
    after the request that opened it had finished (or before the trace began)."""

    opened_by: int  # the id of the request that opened the connection; 0: before the trace
    opened_ns: int  # when that request started; 0 when unknown

    def to_json(self, start_ns: int) -> dict[str, Any]:
        age = round((start_ns - self.opened_ns) / 1e6, 3) if self.opened_ns else None
        return {"opened_by": self.opened_by or None, "age_ms": age}


@dataclass(slots=True)
class Request:
    """One client connection through the mesh: its path, the backend chosen, its fate."""

    id: int
    proto: str  # "tcp" / "udp"
    client: Flow  # as the client sent it: client ip:port -> entry ip:port
    start_ns: int
    hops: list[Hop] = field(default_factory=list)
    backend_addr: str = ""  # "ip:port" as the backend saw it
    backend_name: str = ""  # netns name here; task/container with Docker enrichment
    client_name: str = ""  # the client's task/container or netns, when known
    service: str = ""
    mode: str = ""  # "mesh", "vip", "dnsrr", "direct"
    status: Status = Status.OPEN
    reply_ns: int = 0  # first packet back at the client side
    end_ns: int = 0
    # What its trace may lack: nodes whose agent was not streaming when it finished ("node2:
    # no agent, its hops are missing"), events the kernel lost while it was in flight.
    missing: list[str] = field(default_factory=list)
    verdict: Verdict | None = None  # set for every finished request that is not ok
    resumed: Resumed | None = None  # set when it starts in the middle of a connection
    dns: DnsResult | None = None  # set for a DNS query that got a response

    @property
    def reply_ms(self) -> float | None:
        return (self.reply_ns - self.start_ns) / 1e6 if self.reply_ns else None

    def to_json(self) -> dict[str, Any]:
        hops = []
        for h in self.hops:
            d = h.to_json()
            d["t_us"] = round((h.ts_ns - self.start_ns) / 1e3, 1)
            hops.append(d)
        out: dict[str, Any] = {
            "v": JSON_SCHEMA_VERSION,
            "id": self.id,
            "proto": self.proto,
            "client": self.client.src,
            "client_name": self.client_name or None,
            "entry": self.client.dst,
            "backend": {"addr": self.backend_addr, "name": self.backend_name}
            if self.backend_addr
            else None,
            "service": self.service or None,
            "mode": self.mode or None,
            "status": str(self.status),
            "start_ns": self.start_ns,
            "reply_ms": None if self.reply_ms is None else round(self.reply_ms, 3),
            "duration_ms": round((self.end_ns - self.start_ns) / 1e6, 3) if self.end_ns else None,
            "hops": hops,
        }
        if self.missing:
            # Hops may be missing (events lost in the kernel, an agent away): not the whole
            # story, whatever its status says.
            out["incomplete"] = True
            out["missing"] = list(self.missing)
        if self.verdict is not None:
            out["verdict"] = self.verdict.to_json()
        if self.resumed is not None:
            out["resumed"] = self.resumed.to_json(self.start_ns)
        if self.dns is not None:
            out["dns"] = self.dns.to_json()
        return out

