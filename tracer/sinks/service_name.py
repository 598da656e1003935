"""The Swarm service a request is about, the same for `replay --service` and the TUI's filter."""

from __future__ import annotations

from tracer.model import HopKind, Request


def service_name(req: Request) -> str:
    """The service whose task answered, else the name the client asked Docker's DNS for (a
    query to 127.0.0.11 is about the service it names); "" when neither is known."""
    if req.service:
        return req.service
    dns = next((h for h in req.hops if h.kind is HopKind.DNS), None)
    return dns.detail.split(" -> ")[0] if dns is not None else ""
