"""Verdicts replayed from the fault tests' own recordings (tests/fixtures/faults/, made by
`SWARMTRACE_RECORD_FAULTS=DIR` runs of tests/test_faults_*.py): no root, no kernel needed.

Each .swt replays through the pipeline with the names it recorded and must give every
request the verdict the live run printed (.json). A replay cannot read the conntrack table
the live run read, nor the rule counters: there, a drop before NAT says what it could be
instead of "full", and a netfilter drop does not name its rule."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tracer.diagnose.verdict import explain
from tracer.tui.request_json import request_from_json

FAULTS = Path(__file__).parent / "fixtures" / "faults"
TRACES = sorted(FAULTS.glob("*.swt"))


def _replay(path: Path) -> list[dict[str, Any]]:
    """`swarmtrace replay FILE --json`, as a user reads the verdicts of a recording."""
    res = subprocess.run([sys.executable, "-m", "tracer", "replay", str(path), "--json"],
                         capture_output=True, text=True, check=True)
    return [json.loads(line) for line in res.stdout.splitlines()]


@pytest.mark.parametrize("trace", TRACES, ids=[p.stem for p in TRACES])
def test_replay_gives_the_live_verdicts(trace: Path) -> None:
    live = {r["client"]: r.get("verdict") for r in json.loads(trace.with_suffix(".json")
                                                               .read_text())}
    replayed = {r["client"]: r.get("verdict") for r in _replay(trace)}
    assert live, "the live run traced nothing"
    for client, verdict in live.items():
        got = replayed[client]
        if verdict is not None and verdict["cause"] == "conntrack-full":
            assert got is not None and got["cause"] == "netfilter-early"
            assert "conntrack" in got["hint"]
            continue
        if verdict is None:
            assert got is None, client
            continue
        # Live, the rule counters named the rule that dropped it: a replay cannot read them.
        assert got is not None and verdict["evidence"].startswith(got["evidence"]), client
        assert {**got, "evidence": ""} == {**verdict, "evidence": ""}, client


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


def test_verdicts_survive_the_json_round_trip() -> None:
    for path in TRACES:
        for d in json.loads(path.with_suffix(".json").read_text()):
            assert request_from_json(d).to_json() == d
