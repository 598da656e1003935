"""The full image (scripts/image) in the stock-kernel VM lab: loaded into node1's dockerd of a
real 2-node swarm, it traces Docker's own routing mesh with the bcc backend, run with the
README's least-privilege flags (`--cap-drop ALL --cap-add SYS_ADMIN --cap-add NET_ADMIN`, the
node's socket and sandboxes, the three bcc mounts), never `--privileged`.

Asserted per request, as a user checks by hand with `ipvsadm -lnc` and `docker inspect`: the
real server in the image's trace is IPVS's own choice, and the task that answered, named as
Docker names it. Then the image runs once without each capability and mount, and each run
fails in one line saying what to add. About 10 minutes under emulation."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from image_build import build_image
from ipvs_match import Json, check_swarm_request, pairs, requests
from vm_fixtures import GuestRunner, check_ipvs_in_guest, vm_guest_fixture  # noqa: F401

from tracer.vm import in_guest

pytestmark = [
    pytest.mark.vm,
    pytest.mark.image,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root: mmdebstrap builds the image"),
    pytest.mark.skipif(in_guest(), reason="the image is built on the host (apt, mmdebstrap)"),
]
N = 4
MODES = ("mesh", "vip")


@pytest.fixture(scope="module")
def archive() -> Path:
    """Built (or taken from the cache) before the guest boots, unless another module booted it."""
    return build_image()


@pytest.fixture(scope="module")
def result(archive: Path, vm_guest: GuestRunner) -> Json:
    return check_ipvs_in_guest(vm_guest, "swarm", N, 2400, "--backends", "bcc",
                               "--image", str(vm_guest.share_file(archive)))


def test_runs_with_least_privilege(result: Json) -> None:
    argv = result["image"]["argv"]
    assert argv[argv.index("--cap-drop") + 1] == "ALL"
    assert sorted(a for a in argv if a.startswith("--cap-add")) == [
        "--cap-add=NET_ADMIN", "--cap-add=SYS_ADMIN"]
    assert "--privileged" not in argv
    assert any(n.startswith("swarmtrace: tracing with the bcc backend")
               for n in result["traced"]["bcc"]["notes"])


@pytest.mark.parametrize("mode", MODES)
def test_both_tasks_answer(result: Json, mode: str) -> None:
    answered = [a["backend"] for a in result["answers"] if a["mode"] == mode]
    assert len(answered) == N and len(set(answered)) == 2, answered


def test_real_server_is_ipvs_choice_and_the_task_that_answered(result: Json) -> None:
    for answer, traced in pairs(result, "bcc", MODES):
        check_swarm_request(result, answer, traced)


def test_lb_hop_is_ipvs_own_decision(result: Json) -> None:
    for q in requests(result, "bcc", MODES):
        lb = next(h for h in q["hops"] if h["kind"] == "lb")
        assert lb["detail"] == f"IPVS fwmark {int(lb['mark'], 16)} rr", lb


# What the image says without each of its flags (README, Install: the bcc rows).
WITHOUT = {
    "--cap-add SYS_ADMIN": "add --cap-add SYS_ADMIN",
    "--cap-add NET_ADMIN": "add --cap-add NET_ADMIN",
    "-v /sys/kernel/debug": "-v /sys/kernel/debug:/sys/kernel/debug:ro",
    "-v /lib/modules": "-v /lib/modules:/lib/modules:ro",
    "-v /usr/src": "-v /usr/src:/usr/src:ro",
}


@pytest.mark.parametrize("left_out", WITHOUT)
def test_without_each_flag_one_line_says_what_to_add(result: Json, left_out: str) -> None:
    run = result["image"]["without"][left_out]
    said = [line for line in run["stderr"] if line.startswith("swarmtrace: ")]
    assert run["rc"] == 3 and len(said) == 1, run
    assert WITHOUT[left_out] in said[0], run
