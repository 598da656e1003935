"""One refused connect is one request, recorded on the native 2-node swarm lab
(`swarmtrace trace --port 81 --port 8081 -w`): node1's host netns connecting twice to its own
swarm address on port 8081, a vote task twice to its own address on port 81, and the client
task twice to vote's tasks on port 81 (one on each node). Nothing listens on either port.

Where the refusing netns is the client's own, the RST is seen leaving it before the kernel
frees the SYN it answers (NO_SOCKET); closing the request at that RST made the drop start a
second request, and each of the four such connects was shown as two."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tracer.tracefile.requests import trace_requests

FIXTURE = Path(__file__).parent / "fixtures" / "swarm_refused.swt"
SELF = {"192.168.199.1": "node1 host", "10.0.1.3": "vote.2.mon5"}  # address -> netns


@pytest.fixture(scope="module")
def requests() -> list[dict[str, Any]]:
    return [r.to_json() for r in trace_requests(FIXTURE)]


def test_each_refused_connect_is_one_request(requests: list[dict[str, Any]]) -> None:
    clients = [r["client"] for r in requests]
    assert len(requests) == 6 and len(set(clients)) == 6, clients
    assert {r["status"] for r in requests} == {"refused"}


def test_the_drop_of_the_refused_syn_is_a_hop_of_its_request(
        requests: list[dict[str, Any]]) -> None:
    self_refused = 0
    for r in requests:
        addr = r["backend"]["addr"].split(":")[0]
        refuser = r["backend"]["name"].split(" on ")[0]
        drops = [(h["netns"], h["detail"]) for h in r["hops"] if h["kind"] == "drop"]
        assert drops == [(refuser, "NO_SOCKET")], r
        if r["client"].split(":")[0] == addr:  # the client's own netns refused
            assert r["client_name"] == refuser == SELF[addr], r
            self_refused += 1
    assert self_refused == 4
