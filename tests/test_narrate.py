"""Talk mode's sentences over every request of the bundled sample and the swarm fixture."""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path

import pytest

from tracer.commands.replay import sample_path
from tracer.model import HopKind, Request
from tracer.sinks.hop_order import causal_hops
from tracer.sinks.narrate import narrate, place, task_name
from tracer.sinks.text import TextSink
from tracer.tracefile.requests import trace_requests
from tracer.tui.request_json import load_requests

FIXTURES = Path(__file__).parent / "fixtures"
DOUBLED = re.compile(r"\b(\w[\w.-]*(?: \w[\w.-]*)?) \1\b", re.IGNORECASE)


@cache
def sample() -> tuple[Request, ...]:
    path = sample_path()
    return tuple(trace_requests(path))


def every_request() -> list[Request]:
    fixtures = [r for name in ("requests_swarm.json", "requests_sample.json")
                for r in load_requests(FIXTURES / name)[0]]
    return [*sample(), *fixtures]


def test_sample_has_every_mode() -> None:
    assert {r.mode for r in sample()} == {"mesh", "vip", "dnsrr", "dns"}


def test_every_sentence_of_every_request_reads_right() -> None:
    for r in every_request():
        hops = causal_hops(r)
        has_nat = any(h.kind in (HopKind.DNAT, HopKind.SNAT, HopKind.LB) for h in hops)
        for i, hop in enumerate(hops):
            s = narrate(r, i)
            where = f"#{r.id} hop {i} ({hop.kind}): {s}"
            if hop.kind is not HopKind.DROP:
                assert "dropped" not in s.lower(), where
            assert not DOUBLED.search(s), where
            assert "service service" not in s and " host on " not in s, where
            if hop.node:
                assert not re.search(rf"\b{hop.node}\b[^.:]* on {hop.node}\b", s), where
            if i and hops[i - 1].kind is HopKind.VXLAN:
                assert "veth" not in s, where
            if "on the way back" in s:
                assert has_nat, where
            if hop.kind is HopKind.DELIVER:  # it enters the backend's netns: no "receives"
                assert s.startswith("The packet reaches "), where


def test_dns_hops_say_what_dns_answered() -> None:
    vip = next(r for r in sample() if r.mode == "vip")
    dns = next(i for i, h in enumerate(causal_hops(vip)) if h.kind is HopKind.DNS)
    s = narrate(vip, dns)
    assert "Docker's DNS" in s and "10.0.1.7" in s and "dropped" not in s


def test_mark_comes_before_the_lb_it_drives() -> None:
    for r in every_request():
        kinds = [h.kind for h in causal_hops(r)]
        if HopKind.MARK in kinds and HopKind.LB in kinds:
            assert kinds.index(HopKind.MARK) < kinds.index(HopKind.LB), r.id


def test_dns_answer_comes_before_its_reply() -> None:
    for r in sample():
        kinds = [h.kind for h in causal_hops(r)]
        if r.mode == "dns":
            assert kinds.index(HopKind.DNS) < kinds.index(HopKind.REPLY), r.id


def test_text_output_is_in_causal_order() -> None:
    import io

    out = io.StringIO()
    r = sample()[1]
    TextSink(out).write(r)
    text = out.getvalue()
    assert text.index("mark 0x102") < text.index("LB -> ")
    summary = text.splitlines()[0]
    assert summary.index("mark 0x102") < summary.index("LB -> ")


@pytest.mark.parametrize(
    ("where", "node", "expected"),
    [("node1 host", "node1", "node1's host"),
     ("node2 ingress_sbox", "node2", "ingress_sbox on node2"),
     ("vote.1.mcp6", "node2", "vote.1.mcp6 on node2"), ("ingress_sbox", "", "ingress_sbox")],
)
def test_place_names_the_node_once(where: str, node: str, expected: str) -> None:
    from tracer.model import Hop

    assert place(Hop(HopKind.SEND, 0, 0, where, node=node)) == expected


def test_task_name_drops_the_node_suffix() -> None:
    r = sample()[0]
    assert r.backend_name.endswith(" on node2") and task_name(r) == "vote-vip.1.mcp6"
