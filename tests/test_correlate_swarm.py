"""Correlation on a real swarm's events, recorded on Debian's stock kernel by both backends at
once (scripts/record_vm_fixtures.py): Docker's own routing mesh and VIP through real IPVS,
two nodes, VXLAN. Replayed here without root or a kernel; checked against what IPVS itself
and the answering tasks said during the recording."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from ipvs_match import Json, check_swarm_path, check_swarm_request, pairs

from tracer.tracefile.requests import trace_requests

FIXTURES = Path(__file__).parent / "fixtures"
BACKENDS = ("bcc", "core")
MODES = ("mesh", "vip")


def _replay(path: Path) -> list[Json]:
    return [r.to_json() for r in trace_requests(path)]


@pytest.fixture(scope="module")
def recorded() -> Json:
    r: Json = json.loads((FIXTURES / "swarm_vm.json").read_text())
    return r


@pytest.fixture(scope="module")
def replayed(recorded: Json) -> Json:
    """The recording's result with each backend's requests as replay rebuilds them."""
    traced = {b: {**recorded["traced"][b], "requests": _replay(FIXTURES / f"swarm_vm_{b}.swt")}
              for b in BACKENDS}
    return {**recorded, "traced": traced}


@pytest.mark.parametrize("backend", BACKENDS)
def test_replay_gives_the_requests_shown_live(recorded: Json, replayed: Json,
                                              backend: str) -> None:
    def summary(r: Json) -> list[tuple[str, str, object, list[tuple[str, str]]]]:
        return sorted((q["client"], q["mode"], q["backend"],
                       [(h["netns"], h["kind"]) for h in q["hops"]])
                      for q in r["traced"][backend]["requests"])

    assert summary(replayed) == summary(recorded)


@pytest.mark.parametrize("backend", BACKENDS)
def test_each_request_is_ipvs_choice_and_the_task_that_answered(replayed: Json,
                                                                backend: str) -> None:
    for answer, traced in pairs(replayed, backend, MODES):
        check_swarm_request(replayed, answer, traced)
        check_swarm_path(answer, traced)


def test_flooded_copies_are_not_hops(replayed: Json) -> None:
    """The overlay bridge floods a first packet to every port until it learns the task's MAC:
    copies dropped as OTHERHOST elsewhere are not where the request went."""
    for backend in BACKENDS:
        for q in replayed["traced"][backend]["requests"]:
            assert not [h for h in q["hops"] if h["kind"] == "drop"], q["hops"]
            delivered = [h["netns"] for h in q["hops"] if h["kind"] == "deliver"]
            assert len(delivered) == 1 and delivered[0].startswith("vote-vip."), q["hops"]
