"""Correlation on events recorded from a real run (scripts/record_fixtures.py): no kernel needed."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tracer.correlate import Correlator
from tracer.events import decode
from tracer.model import HopKind, Request, Status
from tracer.pipeline import Pipeline
from tracer.tracefile import ReplaySource
from tracer.tracefile.requests import trace_requests
from tracer.tracefile.topology import trace_names

FIXTURE = Path(__file__).parent / "fixtures" / "lab_mesh_vip.swt"


@pytest.fixture(scope="module")
def recorded() -> tuple[np.ndarray, dict]:
    with ReplaySource(FIXTURE) as src:
        chunks = []
        while not src.finished:
            chunks.append(src.poll(0))
    return np.concatenate(chunks), json.loads(FIXTURE.with_suffix(".json").read_text())


def _replay() -> list[Request]:
    return trace_requests(FIXTURE)


def test_replay_gives_the_requests_shown_live(recorded: tuple[np.ndarray, dict]) -> None:
    _, expected = recorded
    got = {r.client.src: r.to_json() for r in _replay()}
    assert len(got) == len(expected["live"])
    for live in expected["live"]:
        mine = got[live["client"]]
        assert mine["backend"] == live["backend"]
        assert [(h["netns"], h["kind"]) for h in mine["hops"]] == \
            [(h["netns"], h["kind"]) for h in live["hops"]]


def test_backends_are_the_ones_that_answered(recorded: tuple[np.ndarray, dict]) -> None:
    _, expected = recorded
    got = {r.client.src: r for r in _replay()}
    for answer in expected["answers"]:
        req = got[answer["client"]]
        assert req.backend_name == answer["backend"]
        assert req.status == Status.OK


def test_mesh_path_has_the_article_hops() -> None:
    mesh = [r for r in _replay() if r.mode == "mesh"]
    assert mesh
    for r in mesh:
        kinds = [(h.where, h.kind) for h in r.hops]
        assert kinds[0] == ("client", HopKind.SEND)
        assert ("host", HopKind.ENTER_NODE) in kinds
        assert ("host", HopKind.DNAT) in kinds
        assert ("ingress_sbox", HopKind.MARK) in kinds
        assert ("ingress_sbox", HopKind.LB) in kinds
        assert ("ingress_sbox", HopKind.SNAT) in kinds
        assert ("ingress", HopKind.BRIDGE) in kinds
        assert kinds[-1][1] == HopKind.REPLY
        dnat = next(h for h in r.hops if h.kind == HopKind.DNAT and h.where == "host")
        assert dnat.after is not None and dnat.after.dst == "172.18.0.2:8080"
        mark = next(h for h in r.hops if h.kind == HopKind.MARK)
        assert mark.mark == 0x105
        snat = next(h for h in r.hops if h.kind == HopKind.SNAT)
        assert snat.after is not None and snat.after.saddr == "10.255.0.2"
        # Hops are in time order, and the reply comes after delivery.
        assert [h.ts_ns for h in r.hops] == sorted(h.ts_ns for h in r.hops)


def test_vip_balancer_is_in_the_client(recorded: tuple[np.ndarray, dict]) -> None:
    vip = [r for r in _replay() if r.mode == "vip"]
    assert len(vip) == 4
    for r in vip:
        mark = next(h for h in r.hops if h.kind == HopKind.MARK)
        lb = next(h for h in r.hops if h.kind == HopKind.LB)
        assert (mark.where, mark.mark) == ("vip-client", 0x103)
        assert lb.where == "vip-client" and lb.after is not None
        assert lb.after.daddr in ("10.0.0.10", "10.0.0.11")


@pytest.mark.parametrize("chunk", [1, 3, 17])
def test_incremental_feeding_gives_the_same_requests(
        recorded: tuple[np.ndarray, dict], chunk: int) -> None:
    events, _ = recorded
    whole = Correlator()
    expected = [r.to_json() for r in whole.feed(decode(events)) + whole.flush()]
    c = Correlator()
    got = []
    for i in range(0, len(events), chunk):
        got += [r.to_json() for r in c.feed(decode(events[i:i + chunk]))]
    got += [r.to_json() for r in c.flush()]
    key = lambda r: r["client"]  # noqa: E731
    assert sorted(got, key=key) == sorted(expected, key=key)


def test_memory_is_bounded(recorded: tuple[np.ndarray, dict]) -> None:
    events, _ = recorded
    c = Correlator(max_open=2)
    done = c.feed(decode(events))
    assert len(c.open_requests) <= 2
    assert len(done) + len(c.flush()) >= 10


def test_idle_requests_expire(recorded: tuple[np.ndarray, dict]) -> None:
    events, _ = recorded
    ev = decode(events)
    syn_only = [e for e in ev if e.tcp_flags & 0x02 and not e.tcp_flags & 0x10]
    c = Correlator(idle_ns=1_000_000)
    assert c.feed(syn_only[:3]) == []
    expired = c.expire(syn_only[2].ts_ns + 10_000_000_000)
    assert expired and all(r.status == Status.NO_REPLY for r in expired)


@pytest.fixture(scope="module")
def sample() -> list[Request]:
    """The bundled sample: recorded on a real 2-node swarm, with real IPVS (bcc backend)."""
    path = Path(__file__).parents[1] / "tracer" / "data" / "sample.swt"
    with ReplaySource(path) as src:
        pipe = Pipeline(src, trace_names(path))
        reqs: list[Request] = []
        while not src.finished:
            reqs += pipe.poll(0)
        return reqs + pipe.flush()


@pytest.mark.parametrize("mode", ["mesh", "vip"])
def test_sample_mesh_and_vip_are_ipvs_decisions(sample: list[Request], mode: str) -> None:
    reqs = [r for r in sample if r.mode == mode]
    assert reqs and all(r.service == "vote-vip" and r.status == Status.OK for r in reqs)
    assert {r.backend_name.rsplit(" on ", 1)[1] for r in reqs} == {"node1", "node2"}
    for r in reqs:
        lb = next(h for h in r.hops if h.kind == HopKind.LB)
        assert lb.detail.startswith("IPVS fwmark ") and lb.detail.endswith(" rr")
        sandbox = "ingress_sbox" if mode == "mesh" else "lb_overlay1"
        assert lb.where.endswith(sandbox)


def test_sample_swarm_dnsrr_names_tasks_and_nodes(sample: list[Request]) -> None:
    reqs = sample
    dnsrr = [r for r in reqs if r.mode == "dnsrr"]
    assert dnsrr and all(r.service == "vote" and r.client_name.startswith("client.") for r in dnsrr)
    nodes = {r.backend_name.rsplit(" on ", 1)[1] for r in dnsrr}
    assert nodes == {"node1", "node2"}  # the client reached tasks on both nodes
    for r in dnsrr:
        crossing = [h for h in r.hops if h.kind == HopKind.VXLAN]
        # Only the task on the other node is reached over the overlay.
        assert bool(crossing) == r.backend_name.endswith("on node2")
        if crossing:
            assert crossing[0].detail.startswith("node1 -> node2, VNI ")
            assert crossing[0].detail.endswith(" (overlay1)")
    dns = [r for r in reqs if r.mode == "dns"]
    assert dns and all(r.backend_name == "Docker DNS" and r.client.daddr == "127.0.0.11"
                       for r in dns)
    # Docker's DNS answered `vote` with both task addresses; each connection says which of
    # them it picked, and picked the first one listed.
    answers = [h.detail for r in dns for h in r.hops if h.kind == HopKind.DNS]
    assert answers and all(a.endswith("(ttl 600)") for a in answers)
    assert all(len(a.split(", ")) == 2 for a in answers if a.startswith("vote -> 10."))
    for r in dnsrr:
        picked = next(h.detail for h in r.hops if h.kind == HopKind.DNS)
        listed = picked.split(" -> ")[1].split(":")[0].split(", ")
        assert len(listed) == 2 and picked.endswith(f"picked {r.client.daddr}")
        assert listed[0] == r.client.daddr


def test_sample_every_query_shows_its_answer(sample: list[Request]) -> None:
    """busybox asks for A and AAAA on one socket: one request per query, with the A answer,
    and the second query's packets start no request of their own."""
    dns = [r for r in sample if r.mode == "dns"]
    assert dns and all(any(h.kind == HopKind.DNS for h in r.hops) for r in dns)
    assert [r for r in sample if r.status != Status.OK] == []
