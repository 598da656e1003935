"""`vm_guest`: one stock-kernel guest shared by the whole pytest session. `vm_pair`: two
guests on one virtual link (tracer/vm/link.py), each named and addressed, for the two-host
swarm (tests/test_multihost_vm.py).

Use it from a test module with `from vm_fixtures import vm_guest_fixture  # noqa: F401` and a
`vm_guest` argument; every module gets the same guest (kept in the pytest config stash,
stopped when the session ends).
`vm_guest.run(cmd, timeout) -> GuestResult(rc, output)`; timeouts, and waits inside the
guest, scale with the slowdown the guest measured at boot (tracer.slowdown). When pytest
itself runs inside the guest (`swarmtrace vm test`), commands run directly instead. Guest
state is shared: a test removes what it creates (IPVS services, netns, daemons) like on any
real kernel.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import pytest

from tracer import slowdown
from tracer.errors import LabError
from tracer.vm import Guest, GuestResult, VmConfig, in_guest
from tracer.vm.boot import missing_requirements
from tracer.vm.guest import REPO, guest_env
from tracer.vm.link import linked_guests

# Swarm tests in the guest want ~450 MB more than IPVS + BCC; qemu only uses what is touched.
VM_MEMORY = os.environ.get("SWARMTRACE_VM_MEMORY", "3G")
# Each of the pair holds the full image (~430 MB, in tmpfs) besides dockerd and BCC. One vCPU
# each: two emulated guests already take both of this machine's CPUs.
PAIR_MEMORY = "2G"
LINK_NET = "192.168.77"  # the pair's link: A is .1, B is .2 (exists only between the guests)


class GuestRunner(Protocol):
    def run(
        self,
        cmd: str | Sequence[str],
        timeout: float = 600.0,
        *,
        env: Mapping[str, str] | None = None,
    ) -> GuestResult: ...

    def share_file(self, path: Path) -> Path: ...


class LocalRunner:
    """Runs commands right here: pytest is already inside the guest."""

    def run(
        self,
        cmd: str | Sequence[str],
        timeout: float = 600.0,
        *,
        env: Mapping[str, str] | None = None,
    ) -> GuestResult:
        argv = ["sh", "-c", cmd] if isinstance(cmd, str) else list(cmd)
        timeout = slowdown.scaled(timeout)  # as Guest.run does on the host
        with subprocess.Popen(
            argv,
            cwd=REPO,
            env={**os.environ, **guest_env(env)},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # a timeout kills everything the command started
        ) as proc:
            try:
                out, _ = proc.communicate(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                out, _ = proc.communicate()
                return GuestResult(124, out.decode(errors="replace"))
        return GuestResult(proc.returncode, out.decode(errors="replace"))

    def share_file(self, path: Path) -> Path:
        return path  # already here


_GUEST = pytest.StashKey[Guest | LabError]()


def vm_unavailable() -> str | None:
    """Why the VM lab cannot run here (one line), or None."""
    if in_guest():
        return None
    missing = missing_requirements()
    return f"VM lab unavailable: {missing[0]}" if missing else None


@pytest.fixture(scope="session", name="vm_guest")
def vm_guest_fixture(request: pytest.FixtureRequest) -> GuestRunner:
    """The session's stock-kernel guest (booted on first use, ~30-50 s under emulation)."""
    if in_guest():
        return LocalRunner()
    reason = vm_unavailable()
    if reason:
        pytest.skip(reason)
    config = request.config
    if _GUEST not in config.stash:
        guest = Guest(VmConfig(memory=VM_MEMORY))
        try:
            guest.start()
        except LabError as err:
            config.stash[_GUEST] = err  # fail every user fast instead of booting again
        else:
            config.stash[_GUEST] = guest
            config.add_cleanup(guest.stop)
    found = config.stash[_GUEST]
    if isinstance(found, LabError):
        pytest.fail(f"VM guest failed to boot: {found}")
    return found


def check_ipvs_in_guest(guest: GuestRunner, lab: str, count: int, timeout: float,
                        *args: str) -> dict[str, Any]:
    """Run scripts/check_ipvs_backends.py on `lab` (and `args`) in the VM; its JSON result."""
    rc, out = guest.run(["python", "scripts/check_ipvs_backends.py", "--lab", lab,
                         "--count", str(count), *args], timeout=timeout)
    assert rc == 0, out[-3000:]
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    assert result["lb"] == "ipvs", "the lab must use real IPVS inside the VM"
    return result


@dataclass
class PairNode:
    """One guest of the pair: a swarm node named `name` at `addr` on the link."""

    guest: Guest
    name: str
    addr: str

    def step(self, *argv: str, timeout: float = 600.0) -> dict[str, Any]:
        """Run a step of tests/multihost_guest.py here; its JSON result (fails with the
        step's output if it failed)."""
        rc, out = self.guest.run(["python", "tests/multihost_guest.py", *argv],
                                 timeout=timeout)
        assert rc == 0, f"{self.name}: {' '.join(argv[:2])} failed (rc {rc}): {out[-3000:]}"
        result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
        return result

    def sh(self, cmd: str, timeout: float = 300.0) -> str:
        rc, out = self.guest.run(cmd, timeout=timeout)
        assert rc == 0, f"{self.name}: {cmd} failed (rc {rc}): {out[-3000:]}"
        return out


def on_both(nodes: Sequence[PairNode], step: Callable[[PairNode], dict[str, Any]]
            ) -> list[dict[str, Any]]:
    """step(node) on every node at once (each guest has its own vCPU); results in order."""
    with ThreadPoolExecutor(len(nodes)) as pool:
        return list(pool.map(step, nodes))


@pytest.fixture(scope="session", name="vm_pair")
def vm_pair_fixture() -> Iterator[tuple[PairNode, PairNode]]:
    """Two guests (two kernels, two clocks) booted side by side on one link, named vm1 and
    vm2, vm1 having pinged vm2. Both are stopped when the session ends (on failure too)."""
    if in_guest():
        pytest.skip("the pair is booted from the host")
    reason = vm_unavailable()
    if reason:
        pytest.skip(reason)
    t0 = time.monotonic()

    def progress(msg: str) -> None:
        print(f"vm_pair [{time.monotonic() - t0:5.0f} s] {msg}", file=sys.stderr, flush=True)

    try:
        with linked_guests(VmConfig(memory=PAIR_MEMORY, cpus=1), progress) as (a, b, link):
            nodes = (PairNode(a, "vm1", f"{LINK_NET}.1"), PairNode(b, "vm2", f"{LINK_NET}.2"))
            for end, node in enumerate(nodes):
                node.step("link", node.name, f"{node.addr}/24", link.mac(end), timeout=60)
            rtt = nodes[0].step("ping", nodes[1].addr, timeout=60)["rtt_ms"]
            progress(f"vm1 pings vm2 over the link: {rtt} ms")
            yield nodes
    except LabError as err:
        pytest.fail(f"the VM pair failed: {err}")
