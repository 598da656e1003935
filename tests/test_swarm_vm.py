"""Docker's own routing mesh and VIP on a real 2-node swarm (two dockerds, real VXLAN, real
IPVS) in the stock-kernel VM lab, traced by both probe backends at the same time.

What a user checks by hand with `ipvsadm -lnc` and `docker inspect`, asserted per request:
the real server each trace shows is the one IPVS recorded and the task that answered, named
as Docker names it; both backends tell the same story. Takes about 5 minutes under emulation
(the swarm converges in ~130 s)."""

from __future__ import annotations

import pytest
from ipvs_match import (
    Json,
    check_ipvs_decision,
    check_swarm_path,
    check_swarm_request,
    chosen,
    crossing,
    pairs,
    requests,
)
from vm_fixtures import GuestRunner, check_ipvs_in_guest, vm_guest_fixture  # noqa: F401

pytestmark = pytest.mark.vm
N = 4
MODES = ("mesh", "vip")
BACKENDS = ("bcc", "core")


@pytest.fixture(scope="module")
def result(vm_guest: GuestRunner) -> Json:
    return check_ipvs_in_guest(vm_guest, "swarm", N, timeout=1500)


@pytest.mark.parametrize("mode", MODES)
def test_both_tasks_answer(result: Json, mode: str) -> None:
    answered = [a["backend"] for a in result["answers"] if a["mode"] == mode]
    assert len(answered) == N and len(set(answered)) == 2, answered


@pytest.mark.parametrize("backend", BACKENDS)
def test_real_server_is_ipvs_choice_and_the_task_that_answered(result: Json,
                                                              backend: str) -> None:
    for answer, traced in pairs(result, backend, MODES):
        check_swarm_request(result, answer, traced)


@pytest.mark.parametrize("backend", BACKENDS)
def test_path_shows_each_hop(result: Json, backend: str) -> None:
    # Both backends read the VXLAN packet where it leaves one node and enters the other.
    for answer, traced in pairs(result, backend, MODES):
        check_swarm_path(answer, traced, observed=True)


def test_bcc_shows_ipvs_own_decision(result: Json) -> None:
    for q in requests(result, "bcc", MODES):
        check_ipvs_decision(q)


def test_backends_agree(result: Json) -> None:
    def seen(backend: str) -> dict[str, tuple[str, str, str, str | None, str | None]]:
        return {q["client"]: (q["mode"], q["backend"]["name"], chosen(q), q["client_name"],
                              crossing(q))
                for q in requests(result, backend, MODES)}

    assert seen("bcc") == seen("core")
    # Requests served on the other node are among them, with the crossing both saw.
    assert any(crossing(q) for q in requests(result, "bcc", MODES))
