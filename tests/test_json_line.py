"""The JSON sink's lines, written from cached pieces, are Request.to_json() encoded: the same
text for every request of every recorded fixture and of the sample, written twice (the second
time from the pieces kept), and for the fields no fixture has."""

from __future__ import annotations

from pathlib import Path

import pytest

from tracer.commands.replay import sample_path
from tracer.events import Flow
from tracer.model import DnsQuery, DnsResult, Hop, HopKind, Request, Resumed, Status, Verdict
from tracer.sinks.json_line import ENCODER, JsonLines
from tracer.tracefile.requests import trace_requests

FIXTURES = Path(__file__).parent / "fixtures"
TRACES = sorted(FIXTURES.rglob("*.swt"))


@pytest.mark.parametrize("path", [*TRACES, None], ids=lambda p: p.name if p else "sample")
def test_every_recorded_request_is_its_to_json(path: Path | None) -> None:
    reqs = trace_requests(path or sample_path(), report=False)
    assert reqs
    lines = JsonLines()
    for _ in range(2):
        for r in reqs:
            assert lines.line(r) == ENCODER.encode(r.to_json())


def test_what_no_fixture_has() -> None:
    """Escapes, a resumed connection, lost events, an agent's node, a DNS lookup's tries."""
    flow = Flow("10.0.0.2", 40000, "10.0.0.9", 80)
    hops = [Hop(HopKind.SEND, 100, 1, 'cli"ent\\', node="nöde1", ifindex=3),
            Hop(HopKind.DNAT, 2_500, 2, "host", mark=0x105, before=flow, after=flow.reversed(),
                detail="rule \u2192 \"x\"\n"),
            Hop(HopKind.DROP, 2_549, 2, "host", detail="NETFILTER_DROP")]
    r = Request(7, "udp", flow, 100, hops, backend_addr="10.0.0.9:80", backend_name="b é",
                client_name="c\t", service="vote", mode="vip", status=Status.DROPPED,
                reply_ns=1_234_567, end_ns=9_876_543,
                missing=["3 events lost in the kernel while it was in flight"],
                verdict=Verdict("node1", "host", "drop", "forward-drop", "e\u00e9", "h"),
                resumed=Resumed(3, 50),
                dns=DnsResult("vote", "A", "NOERROR", ("10.0.0.9",),
                              (DnsQuery(6, "vote.lab", "NXDOMAIN"),)))
    lines = JsonLines()
    assert lines.line(r) == ENCODER.encode(r.to_json())
    bare = Request(8, "tcp", flow, 0)
    assert lines.line(bare) == ENCODER.encode(bare.to_json())


def test_hop_times_round_as_the_float_does() -> None:
    """Every rounding case of a hop's time: ties (to even, as the float lies), both sides of
    them, negative times (a DNS answer before the request), huge ones."""
    times = [0, 1, 49, 50, 51, 99, 100, 149, 150, 151, 250, 350, 1_013_232_449, 10**15 - 50,
             10**15, 10**18 + 7, -1, -50, -150, -2_000_049]
    times += [k * 100 + 50 for k in range(0, 10**6, 997)]
    flow = Flow("10.0.0.2", 40000, "10.0.0.9", 80)
    for ns in times:
        r = Request(1, "tcp", flow, 10**18, [Hop(HopKind.SEND, 10**18 + ns, 1, "client")])
        assert JsonLines().line(r) == ENCODER.encode(r.to_json()), ns
