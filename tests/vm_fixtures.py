"""`vm_guest`: one stock-kernel guest shared by the whole pytest session.

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
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import pytest

from tracer import slowdown
from tracer.errors import LabError
from tracer.vm import Guest, GuestResult, VmConfig, in_guest
from tracer.vm.boot import missing_requirements
from tracer.vm.guest import REPO, guest_env

# Swarm tests in the guest want ~450 MB more than IPVS + BCC; qemu only uses what is touched.
VM_MEMORY = os.environ.get("SWARMTRACE_VM_MEMORY", "3G")


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
