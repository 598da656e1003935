"""A resolver's search, replayed from real recordings (tests/fixtures/faults/, made by
`SWARMTRACE_RECORD_FAULTS=DIR` runs of tests/test_dns_lab.py and tests/test_faults_swarm.py;
dns_forwards_after_the_answer is a run of test_dns_name_that_does_not_exist):
a search-domain expansion that failed before the name was found is a step of the lookup, not
a failure; a lookup whose every name failed is one, its verdict naming the names tried, and
the queries Docker DNS forwarded upstream for it have none of their own. No root, no
kernel."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tracer.correlate import Correlator
from tracer.dns_lookups import LOOKUP_GAP_NS
from tracer.model import HopKind, Request, Status
from tracer.sinks.narrate import outcome
from tracer.sinks.text import block, summary
from tracer.tracefile.reader import EventChunk, TraceReader
from tracer.tracefile.requests import trace_requests
from tracer.tracefile.ring import KEEP_ON
from tracer.tui.request_json import request_from_json

FAULTS = Path(__file__).parent / "fixtures" / "faults"
ANSWERED = FAULTS / "search_domain_expansion_then_the_name_answered.swt"  # netns lab, glibc
NOT_FOUND = FAULTS / "search_domain_expansion_then_the_bare_name.swt"  # netns lab, glibc
SERVICE = FAULTS / "service_found_after_a_search_domain.swt"  # swarm lab, Docker DNS
NOSUCH = FAULTS / "dns_name_that_does_not_exist.swt"  # swarm lab, Docker DNS, ndots:0
# The same, where Docker DNS forwarded the AAAA of nosuch.stlab.test after it had answered
# the A (the client's query was over: the first error ends it).
FORWARDED_LATE = FAULTS / "dns_forwards_after_the_answer.swt"
DOCKER_DNS = "127.0.0.11"


def _queries(path: Path) -> dict[str, list[Request]]:
    """The trace's DNS queries that got a response, by the name asked, in order."""
    out: dict[str, list[Request]] = {}
    for r in sorted(trace_requests(path), key=lambda r: r.start_ns):
        if r.dns is not None:
            out.setdefault(r.dns.name, []).append(r)
    return out


def test_an_expansion_before_the_name_found_is_a_step() -> None:
    asked = _queries(ANSWERED)
    [expansion], [found] = asked["known.stlab.test"], asked["known"]
    assert (expansion.status, expansion.verdict) == (Status.DNS_SEARCH, None)
    assert expansion.dns is not None and expansion.dns.rcode == "NXDOMAIN"
    assert (found.status, found.verdict) == (Status.OK, None)
    assert found.dns is not None and found.dns.addrs == ("127.0.0.1",)
    assert [(q.id, q.name, q.rcode) for q in found.dns.tried] == [
        (expansion.id, "known.stlab.test", "NXDOMAIN")]
    assert summary(expansion).endswith(
        "| NXDOMAIN, a search step: the resolver asked the next name")
    assert summary(found).endswith(
        "| after 1 search-domain expansion (known.stlab.test: NXDOMAIN)")
    assert outcome(found).endswith(", after 1 search-domain expansion "
                                   "(known.stlab.test: NXDOMAIN)")
    assert expansion.to_json()["status"] == "dns-search"
    assert "verdict" not in expansion.to_json()


def test_a_lookup_whose_every_name_failed_is_one_failure_naming_them() -> None:
    asked = _queries(NOT_FOUND)
    [expansion], [bare] = asked["nosuch.stlab.test"], asked["nosuch"]
    assert (expansion.status, expansion.verdict) == (Status.DNS_SEARCH, None)
    assert bare.status == Status.DNS_FAILED and bare.verdict is not None
    assert (bare.verdict.hop, bare.verdict.cause) == ("dns", "dns-nxdomain")
    assert bare.dns is not None and [q.name for q in bare.dns.tried] == ["nosuch.stlab.test"]
    assert f"asked nosuch.stlab.test (NXDOMAIN, request #{expansion.id}) before" in \
        bare.verdict.evidence, bare.verdict


def test_a_service_found_through_docker_dns_after_its_expansion() -> None:
    """The expansion Docker DNS did not know and forwarded (its forwarded queries, from the
    task's netns, too) is a step: the lookup of the service raises nothing. In this recording
    the tracer reads vote's A records after the reply that ended the query (its AAAA went
    first, empty): the held query is answered after all, not `dns-empty`."""
    requests = trace_requests(SERVICE)
    assert [r for r in requests if r.verdict is not None] == []
    expansions = [r for r in requests if r.dns is not None and r.dns.name == "vote.stlab.test"]
    forwarded = [r for r in expansions if r.client.daddr != "127.0.0.11"]
    assert forwarded and len(expansions) > len(forwarded)
    assert {r.status for r in expansions} == {Status.DNS_SEARCH}
    [found] = [r for r in requests if r.dns is not None and r.dns.addrs]
    assert found.dns is not None and found.dns.name == "vote" and found.status == Status.OK
    assert [h.detail for h in found.hops if h.kind == HopKind.DNS] == [
        f"vote -> {', '.join(found.dns.addrs)} (ttl 600)"]
    assert "after 1 search-domain expansion (vote.stlab.test: NXDOMAIN)" in summary(found)


def test_a_failed_query_waits_for_the_next_name_then_is_reported() -> None:
    """Streaming: the last query of a lookup that failed is held while the resolver may ask
    another name, and reported as a failure once LOOKUP_GAP_NS passed without one."""
    with TraceReader(NOT_FOUND) as reader:
        chunks = [rec.events for rec in reader if isinstance(rec, EventChunk)]
    events = np.concatenate(chunks)
    corr = Correlator(idle_ns=10 * LOOKUP_GAP_NS)
    done = corr.feed_array(events)
    assert [(r.dns.name if r.dns else "", r.status) for r in done] == [
        ("nosuch.stlab.test", Status.DNS_SEARCH)]
    last = int(events["ts_ns"].max())
    assert corr.expire(last + LOOKUP_GAP_NS // 2) == []
    [bare] = corr.expire(last + 2 * LOOKUP_GAP_NS)
    assert bare.dns is not None and (bare.dns.name, bare.status) == ("nosuch",
                                                                     Status.DNS_FAILED)
    assert corr.flush() == []


def test_keep_on_failed_keeps_no_search_step() -> None:
    assert Status.DNS_SEARCH not in KEEP_ON["failed"]
    assert Status.DNS_FAILED in KEEP_ON["failed"]


def test_docker_dns_forwards_of_a_failed_lookup_have_no_verdict_of_their_own() -> None:
    """Every name of the lookup failed (nosuch, then nosuch.stlab.test): one verdict, on the
    client's last query to Docker DNS. Docker DNS's forwards of nosuch are search steps, its
    two forwards of nosuch.stlab.test (A, AAAA) are shown as requests pointing at it."""
    requests = trace_requests(NOSUCH)
    lookup = [r for r in requests if r.dns is not None
              and r.dns.name in ("nosuch", "nosuch.stlab.test")]
    assert len(lookup) == len(requests) == 6
    [failed] = [r for r in lookup if r.verdict is not None]
    assert failed.client.daddr == DOCKER_DNS and failed.status == Status.DNS_FAILED
    assert failed.dns is not None and failed.dns.name == "nosuch.stlab.test"
    assert block(failed, hops=False).splitlines()[1] == (
        "    verdict: dns-nxdomain in node1 asker.1.5eve (dns): Docker DNS (127.0.0.11) answered "
        f"nosuch.stlab.test: NXDOMAIN; the same lookup asked nosuch (NXDOMAIN, request "
        f"#{failed.dns.tried[0].id}) before: nosuch.stlab.test is a search-domain expansion "
        "of nosuch (resolv.conf `search stlab.test`), tried after nosuch failed; no service, "
        "task, container or alias named nosuch is on a network of this task, and the resolvers "
        "Docker DNS forwards other names to do not know it either: check the name (`docker "
        "service ls`) and that the service is attached to a network this task is on (`docker "
        "service inspect`)")
    forwards = [r for r in lookup if r.status == Status.DNS_FORWARDED]
    assert sorted(r.dns.qtype for r in forwards if r.dns is not None) == ["A", "AAAA"]
    for r in forwards:
        assert r.client.daddr != DOCKER_DNS and r.dns is not None
        assert (r.dns.name, r.dns.rcode, r.dns.forwarded_for) == (
            "nosuch.stlab.test", "NXDOMAIN", failed.id)
        assert summary(r).endswith(f"| NXDOMAIN, asked upstream for request #{failed.id}: "
                                   "its verdict covers this")
        assert outcome(r) == f"answered NXDOMAIN, asked upstream for request #{failed.id}, " \
            "whose verdict covers it"
        d = r.to_json()
        assert (d["status"], d["dns"]["forwarded_for"]) == ("dns-forwarded", failed.id)
        assert "verdict" not in d
        assert request_from_json(d).to_json() == d
    steps = [r for r in lookup if r.status == Status.DNS_SEARCH]
    assert {r.dns.name for r in steps if r.dns is not None} == {"nosuch"} and len(steps) == 3
    assert "forwarded_for" not in failed.to_json()["dns"]


def test_forwards_whose_own_lookup_ends_first_wait_for_the_query_they_served() -> None:
    """Streaming: Docker DNS's lookup of nosuch.stlab.test asks nothing more a little before
    the client's does (its queries ended first). Its forwards wait for the client's query, and
    go out with it, without a verdict."""
    with TraceReader(NOSUCH) as reader:
        chunks = [rec.events for rec in reader if isinstance(rec, EventChunk)]
    events = np.concatenate(chunks)
    ended = {r.id: r.end_ns for r in trace_requests(NOSUCH)}
    corr = Correlator(idle_ns=10 * LOOKUP_GAP_NS)
    assert [r.status for r in corr.feed_array(events)] == [Status.DNS_SEARCH] * 3
    forwards_end, client_end = max(ended[5], ended[6]), ended[4]
    assert forwards_end < client_end
    assert corr.expire(forwards_end + LOOKUP_GAP_NS + 1) == []
    out = corr.expire(client_end + LOOKUP_GAP_NS + 1)
    assert [(r.id, r.status) for r in out] == [
        (5, Status.DNS_FORWARDED), (6, Status.DNS_FORWARDED), (4, Status.DNS_FAILED)]
    assert corr.flush() == []


def test_keep_on_failed_keeps_no_forward() -> None:
    assert Status.DNS_FORWARDED not in KEEP_ON["failed"]


@pytest.mark.parametrize("path", [NOSUCH, FORWARDED_LATE], ids=lambda p: p.stem)
def test_one_verdict_per_failed_lookup(path: Path) -> None:
    requests = trace_requests(path)
    [failed] = [r for r in requests if r.verdict is not None]
    assert failed.client.daddr == DOCKER_DNS and failed.dns is not None
    assert (failed.dns.name, failed.verdict.cause) == ("nosuch.stlab.test", "dns-nxdomain")
    forwards = [r for r in requests if r.dns is not None and r.dns.name == failed.dns.name
                and r is not failed]
    assert len(forwards) == 2 and {r.status for r in forwards} == {Status.DNS_FORWARDED}
    assert {r.dns.forwarded_for for r in forwards if r.dns is not None} == {failed.id}
    if path == FORWARDED_LATE:
        assert max(r.start_ns for r in forwards) > failed.end_ns
