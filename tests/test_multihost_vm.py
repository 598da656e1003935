"""Issue 12, test 7b: a real two-host swarm. Two stock-kernel guests (two kernels, two clocks)
on one virtual link, one dockerd each; agents deployed by `swarmtrace deploy` from the image
loaded into both (no registry), tracing with bcc. Mesh and VIP requests enter vm1 and are
served on vm2; `trace --swarm` on vm1 joins each one across the two hosts.

Only with `scripts/test --multihost` (two emulated guests: minutes, see the README's Tests
section). Run under the VM lock: flock /tmp/swarmtrace-vm.lock scripts/test --multihost
tests/test_multihost_vm.py
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from image_build import build_image
from ipvs_match import (
    Json,
    check_crossing,
    check_ipvs_decision,
    check_swarm_path,
    check_swarm_request,
    pairs,
    requests,
)
from vm_fixtures import PairNode, on_both, vm_pair_fixture  # noqa: F401

from tracer import __version__

pytestmark = [pytest.mark.vm, pytest.mark.multihost]

IMAGE = f"swarmtrace:{__version__}"
MODES = ("mesh", "vip")
N = 3  # requests per mode
AGENT_UP_S = 600.0  # a new agent task: container start + BCC compiling on one emulated vCPU
MISSING = "vm2: no agent, its hops are missing"
# The collector runs on vm1: vm2's clock is told against vm1's agent (overlay packets seen
# both ways) or against this host, vm1 (pings).
CLOCK = re.compile(r"vm2: clock ([+-][\d.]+) ms vs (?:vm1|this host), \+- ([\d.]+) us "
                   r"\(([^,]+),")


def timed(what: str, t0: float) -> None:
    print(f"multihost: {what} in {time.monotonic() - t0:.0f} s")


@pytest.fixture(scope="module")
def archive() -> Path:
    """The full image's `docker load` archive, built on the host (cached)."""
    t0 = time.monotonic()
    path = build_image()
    timed("scripts/image", t0)
    return path


@pytest.fixture(scope="module")
def swarm2(archive: Path, vm_pair: tuple[PairNode, PairNode]) -> tuple[PairNode, PairNode]:
    """One dockerd per guest, a swarm of the two (vm1 manager, advertising its link address),
    the image loaded into both, the test services running on it."""
    a, b = vm_pair
    t0 = time.monotonic()
    print(f"multihost: dockerd {on_both(vm_pair, lambda n: n.step('dockerd'))}")
    token = a.step("init", a.addr)["token"]
    b.step("join", a.addr, token, b.addr)
    print(f"multihost: nodes {a.step('nodes', '2')}")
    timed("swarm of two", t0)
    t0 = time.monotonic()
    loaded = on_both(vm_pair, lambda n: n.step("load", str(n.guest.share_file(archive)),
                                               timeout=900))
    print(f"multihost: image loaded {loaded}")
    assert loaded[0]["id"] == loaded[1]["id"]  # one archive, one ID: deploy relies on it
    timed("image into both", t0)
    t0 = time.monotonic()
    a.step("services", a.name, b.name, timeout=900)
    timed("test services", t0)
    return a, b


@pytest.fixture(scope="module")
def deployed(swarm2: tuple[PairNode, PairNode]) -> Iterator[dict[str, Any]]:
    """`swarmtrace deploy` on vm1, waited for until both agents listen; what both guests
    held before it, to compare after undeploy. Undeployed at the end if a test did not."""
    a, b = swarm2
    before = {n.name: n.step("state") for n in (a, b)}
    t0 = time.monotonic()
    out = a.sh(f"swarmtrace deploy --image {IMAGE} --backend bcc --port 8080 --port 80")
    up = a.step("agents", "2", timeout=AGENT_UP_S)
    timed("deploy until both agents listen", t0)
    print(f"multihost: {out.strip()}\n{up}")
    yield {"before": before, "agents": up}
    a.guest.run("swarmtrace undeploy", timeout=300)


def _trace(a: PairNode, name: str, count: int = 0) -> None:
    argv = ["trace-start", name, "--nodes", "vm1", "vm2"]
    a.step(*argv, *(["--count", str(count)] if count else []), timeout=300)


def _result(a: PairNode, name: str, want: int, traffic: dict[str, Any]) -> Json:
    stopped = a.step("trace-stop", name, "--want", str(want), timeout=300)
    return {**traffic, "traced": {"bcc": stopped}}


def test_deploy_runs_a_bcc_agent_per_node_from_the_local_image(deployed: Json) -> None:
    agents = deployed["agents"]
    # A locally loaded image goes to Swarm by its ID: no node tries a registry.
    assert agents["image"].startswith("sha256:"), agents
    assert len(agents["log"]) == 2 and all("the bcc backend" in x for x in agents["log"]), agents
    assert {re.search(r"agent for (\S+) listening on (\S+):", x).groups()  # type: ignore[union-attr]
            for x in agents["log"]} == {("vm1", "192.168.77.1"), ("vm2", "192.168.77.2")}


def test_requests_entering_vm1_are_joined_across_both_hosts(
        swarm2: tuple[PairNode, PairNode], deployed: Json) -> None:
    a, _ = swarm2
    want = N * len(MODES)
    t0 = time.monotonic()
    _trace(a, "joined", count=want)
    traffic = a.step("traffic", a.addr, "--count", str(N))
    result = _result(a, "joined", want, traffic)
    timed(f"trace --swarm --json --count {want} with traffic", t0)
    notes = result["traced"]["bcc"]["notes"]
    print("\n".join(notes))
    # Every request the trace showed, whatever its mode: what to look at when one is missing.
    print([(q["mode"], q["status"], q["client"], q["entry"], q.get("backend"))
           for q in result["traced"]["bcc"]["requests"]])
    assert all(x["ok"] for x in traffic["answers"]), traffic["answers"]
    for answer, traced in pairs(result, "bcc", MODES):
        check_swarm_request(result, answer, traced)  # IPVS's choice, the task that answered
        # The hops in order, each in its netns; the crossing as both agents' bcc saw it.
        check_swarm_path(answer, traced, observed=True)
        check_ipvs_decision(traced)  # read from IPVS by bcc
        vx = check_crossing(traced, "vm1", "vm2")
        assert vx is not None
        assert "(outer 192.168.77.1 -> 192.168.77.2:4789" in vx["detail"], vx
    clock = [m for x in notes if (m := CLOCK.search(x))]
    assert clock, notes
    est_ms, err_us, how = float(clock[0][1]), float(clock[0][2]), clock[0][3]
    print(f"multihost: vm2's clock {est_ms:+.3f} ms vs vm1, +- {err_us:.1f} us ({how})")
    assert err_us < 100_000  # half a round trip over TLS between two emulated guests


def test_stopped_agent_is_named_missing_then_recovers(
        swarm2: tuple[PairNode, PairNode], deployed: Json) -> None:
    a, b = swarm2
    _trace(a, "recover")
    killed = b.step("kill-agent")["killed"]
    assert len(killed) == 1, killed
    t0 = time.monotonic()
    a.step("wait-note", "recover", MISSING, "--timeout", "60")
    timed("vm2 named missing", t0)
    during = a.step("traffic", a.addr, "--count", "2")
    # Swarm starts a new task for the killed one; it compiles BCC again.
    a.step("wait-note", "recover", "vm2: agent connected", "--times", "2", "--timeout",
           str(AGENT_UP_S), timeout=AGENT_UP_S + 60)
    timed("vm2's agent back", t0)
    after = a.step("traffic", a.addr, "--count", "2")
    result = _result(a, "recover", 8, after)
    reqs = requests(result, "bcc", MODES)
    # Everything the trace showed, and the clients sent: what to look at when one is wrong.
    print("\n".join(result["traced"]["bcc"]["notes"]))
    for q in result["traced"]["bcc"]["requests"]:
        print((q["mode"], q["status"], q["client"], q.get("backend"), q.get("missing"),
               [(h["kind"], h.get("node"), h.get("netns")) for h in q["hops"]]))
    print("during", during["answers"], "after", after["answers"])
    sent_during = {x["client"] for x in during["answers"] if x["client"]}
    missing = [q for q in reqs if "missing" in q]
    back = [q for q in reqs if "missing" not in q]
    assert len(missing) == 4 and len(back) == 4, [(q["client"], q.get("missing")) for q in reqs]
    assert sent_during <= {q["client"] for q in missing}
    for q in missing:
        assert q["missing"] == [MISSING], q
        check_ipvs_decision(q)  # vm1's own part is all there
    for answer, traced in pairs({**result, "traced": {"bcc": {"requests": back, "notes": []}}},
                                "bcc", MODES):
        check_swarm_request(result, answer, traced)
        check_crossing(traced, "vm1", "vm2")


def test_undeploy_leaves_both_guests_as_they_were(
        swarm2: tuple[PairNode, PairNode], deployed: Json) -> None:
    a, b = swarm2
    t0 = time.monotonic()
    out = a.sh("swarmtrace undeploy")
    timed("undeploy", t0)
    assert "removed service swarmtrace-agent, secret swarmtrace-token" in out, out

    def now() -> dict[str, Json]:
        return {n.name: n.step("state") for n in (a, b)}
    deadline = time.monotonic() + 120  # nodes remove a task's container after Swarm does
    while (state := now()) != deployed["before"] and time.monotonic() < deadline:
        time.sleep(2)
    assert state == deployed["before"]
