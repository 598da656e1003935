"""Verdicts replayed from the fault tests' own recordings (tests/fixtures/faults/, made by
`SWARMTRACE_RECORD_FAULTS=DIR` runs of tests/test_faults_*.py): no root, no kernel needed.

Each .swt replays through the pipeline with the names it recorded and must give every
request the verdict the live run printed (.json). A replay cannot read the conntrack table
the live run read: there, a drop before NAT says what it could be instead of "full"."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tracer.diagnose.verdict import explain
from tracer.model import Request
from tracer.pipeline import Pipeline
from tracer.tracefile import ReplaySource
from tracer.tracefile.topology import trace_names
from tracer.tui.request_json import request_from_json

FAULTS = Path(__file__).parent / "fixtures" / "faults"
TRACES = sorted(FAULTS.glob("*.swt"))


def _replay(path: Path) -> list[Request]:
    with ReplaySource(path) as src:
        pipe = Pipeline(src, trace_names(path))
        out: list[Request] = []
        while not src.finished:
            out += pipe.poll(0)
        return out + pipe.flush()


@pytest.mark.parametrize("trace", TRACES, ids=[p.stem for p in TRACES])
def test_replay_gives_the_live_verdicts(trace: Path) -> None:
    live = {r["client"]: r.get("verdict") for r in json.loads(trace.with_suffix(".json")
                                                               .read_text())}
    replayed = {str(r.client.src): r.verdict.to_json() if r.verdict else None
                for r in _replay(trace)}
    assert live, "the live run traced nothing"
    for client, verdict in live.items():
        got = replayed[client]
        if verdict is not None and verdict["cause"] == "conntrack-full":
            assert got is not None and got["cause"] == "netfilter-early"
            assert "conntrack" in got["hint"]
            continue
        assert got == verdict, client


def test_json_alone_explains_every_drop() -> None:
    """Without names (a JSON request read back): where and why a kernel drop happened still
    comes from the hops' netns names."""
    seen = set()
    for path in TRACES:
        for d in json.loads(path.with_suffix(".json").read_text()):
            v = d.get("verdict")
            if v is None or v["hop"] != "drop" or v["cause"] == "conntrack-full":
                continue
            got = explain(request_from_json(d))
            assert got is not None and (got.netns, got.hop, got.cause) == (
                v["netns"], v["hop"], v["cause"]), d
            seen.add(got.cause)
    assert {"forward-drop", "forwarding-off", "rp-filter", "task-firewall"} <= seen
