"""The verdict on a DNS query answered without an address: what its rcode means in Swarm, and
the lookup it was part of (the bare name and its search-domain expansions)."""

from __future__ import annotations

from tracer.dns_search import split_expansion
from tracer.enrich.annotate import DOCKER_DNS
from tracer.model import DnsResult, HopKind, Request, Verdict

CAUSES = {"NXDOMAIN": "dns-nxdomain", "SERVFAIL": "dns-servfail", "REFUSED": "dns-refused",
          "NOERROR": "dns-empty"}


def dns_failure(req: Request) -> Verdict | None:
    """The verdict on req, a query whose response had no address; None if it had one."""
    dns = req.dns
    if dns is None or dns.addrs:
        return None
    hop = next((h for h in req.hops if h.kind == HopKind.DNS), None)
    node, where = (hop.node, hop.where) if hop is not None else ("", "")
    said = dns.rcode if dns.rcode != "NOERROR" else f"no address (NOERROR, {dns.qtype})"
    docker = req.client.daddr == DOCKER_DNS
    who = f"Docker DNS ({DOCKER_DNS})" if docker else f"the DNS server {req.client.dst}"
    evidence = f"{who} answered {dns.name}: {said}"
    bare, domains = split_expansion([q.name for q in dns.tried] + [dns.name])
    lookup = ""
    if dns.tried:
        earlier = ", ".join(f"{q.name} ({q.rcode}, request #{q.id})" for q in dns.tried)
        evidence += f"; the same lookup asked {earlier} before"
        if bare and bare != dns.name:
            lookup = f"{dns.name} is a search-domain expansion of {bare} (resolv.conf " \
                f"`search {' '.join(d for d in domains if d)}`), tried after {bare} failed"
        elif bare:
            lookup = f"the search-domain expansion{'s' if len(domains) > 1 else ''} " \
                f"{', '.join(q.name for q in dns.tried)} answered " \
                f"{dns.tried[0].rcode} before the bare name {bare} was tried"
        evidence += f": {lookup}" if lookup else ""
    name = bare or dns.name
    hint = _hint(dns, name) if docker else \
        f"the DNS server {req.client.dst} has no address for {name} ({said})"
    return Verdict(node, where, "dns", CAUSES.get(dns.rcode, "dns-error"), evidence, hint)


def _hint(dns: DnsResult, name: str) -> str:
    """What Docker DNS's answer means."""
    if dns.rcode == "NXDOMAIN":
        return f"no service, task, container or alias named {name} is on a network of this " \
            "task, and the resolvers Docker DNS forwards other names to do not know it " \
            "either: check the name (`docker service ls`) and that the service is attached " \
            "to a network this task is on (`docker service inspect`)"
    if dns.rcode == "SERVFAIL":
        return f"Docker DNS does not know {name} and the resolvers it forwards to failed or " \
            "are unreachable from the task's netns (the daemon's --dns, the host's " \
            "/etc/resolv.conf): check them, and the name"
    if dns.rcode == "NOERROR":
        return f"{name} exists but has no {dns.qtype} address: a service without a running " \
            f"task (`docker service ps {name.removeprefix('tasks.')}`: scaled to 0, or every " \
            "task failing), or an IPv6 question on a network without IPv6"
    return f"the resolver refused or could not parse the query ({dns.rcode}): check the " \
        "client's resolver settings (/etc/resolv.conf in the task)"
