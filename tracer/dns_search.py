"""A resolver's search: the names one lookup asks, a name and its expansions with the
resolv.conf `search` domains (glibc asks the expansions first when the name has fewer dots
than `ndots`, the bare name first otherwise), and how a lookup that found its answer after
failed names reads."""

from __future__ import annotations

from tracer.model import DnsResult


def same_lookup(a: str, b: str) -> bool:
    """Two names a resolver tries for one lookup: the name asked and its expansions with the
    search domains share the first label."""
    return a.split(".", 1)[0] == b.split(".", 1)[0]


def split_expansion(names: list[str]) -> tuple[str, list[str]]:
    """The bare name of a lookup's names (the shortest, when every other one extends it),
    and the search domains the others added to it; ("", []) when there is none."""
    bare = min(names, key=len)
    labels = bare.split(".")
    domains = []
    for n in names:
        if n == bare:
            continue
        parts = n.split(".")
        if parts[: len(labels)] != labels:
            return "", []
        domains.append(".".join(parts[len(labels):]))
    return bare, domains


def search_note(dns: DnsResult) -> str:
    """How an answered query's lookup got there: "after 1 search-domain expansion
    (web.corp.example: NXDOMAIN)"; "" when it asked nothing before."""
    if not dns.tried:
        return ""
    earlier = ", ".join(f"{q.name}: {q.rcode}" for q in dns.tried)
    bare, _ = split_expansion([q.name for q in dns.tried] + [dns.name])
    if bare == dns.name:
        n = len(dns.tried)
        return f"after {n} search-domain expansion{'s' if n > 1 else ''} ({earlier})"
    return f"after {earlier}"
