"""Both probe backends on Debian's stock kernel (real IPVS, kprobes, BCC) in the VM lab,
tracing the same requests through the netns lab's real IPVS services at the same time.

Every traced request's real server must equal IPVS's own connection table and the backend
that answered; bcc and core must agree. Runs wherever the VM lab can boot."""

from __future__ import annotations

import pytest
from ipvs_match import Json, chosen, ipvs_record, pairs, requests
from vm_fixtures import GuestRunner, check_ipvs_in_guest, vm_guest_fixture  # noqa: F401

pytestmark = pytest.mark.vm
N = 4

# On 6.1 the core backend sees IPVS only through conntrack at transmit, and IPVS detaches
# conntrack from a local client's packets: VIP (IPVS in the client's own netns) is visible
# to the bcc backend only. Routing-mesh decisions are visible to both.
MODES = {"bcc": ("mesh", "vip"), "core": ("mesh",)}


@pytest.fixture(scope="module")
def result(vm_guest: GuestRunner) -> Json:
    return check_ipvs_in_guest(vm_guest, "netns", N, timeout=900)


@pytest.mark.parametrize("backend", ["bcc", "core"])
def test_real_server_matches_ipvs_and_answer(result: Json, backend: str) -> None:
    for answer, traced in pairs(result, backend, MODES[backend]):
        assert traced["backend"]["name"] == answer["backend"]
        assert chosen(traced) == ipvs_record(result, answer["client"])


def test_bcc_reports_ipvs_decision(result: Json) -> None:
    for q in requests(result, "bcc", ("mesh",)):
        lb = next(h for h in q["hops"] if h["kind"] == "lb")
        assert lb["detail"].startswith("IPVS fwmark 261 rr")


def test_backends_agree(result: Json) -> None:
    def seen(backend: str) -> dict[str, tuple[str, str]]:
        return {q["client"]: (q["backend"]["name"], chosen(q))
                for q in requests(result, backend, MODES["core"])}

    assert seen("core") == seen("bcc")
