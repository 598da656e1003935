"""Run a command as a user does, with a time limit, and measure its peak memory (wait4)."""

from __future__ import annotations

import os
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import pytest

REPO = Path(__file__).resolve().parent.parent
PYTHON = REPO / ".venv" / "bin" / "python"
# No Docker socket, no BPF: readers of trace files must not need them.
ENV = {
    "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
    "DOCKER_HOST": "unix:///nonexistent.sock",
    "HOME": "/tmp",
}


@dataclass(frozen=True)
class Run:
    returncode: int
    stdout: str
    stderr: str
    seconds: float
    max_rss_kib: int


def run_measured(cmd: Sequence[str], timeout: float, stdout: IO[Any] | None = None) -> Run:
    """Run `cmd`; pytest.fail if it is still running after `timeout` s (it is killed)."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        t0 = time.monotonic()
        proc = subprocess.Popen(
            cmd, stdout=stdout if stdout is not None else out, stderr=err,
            stdin=subprocess.DEVNULL, env=ENV, cwd=REPO,
        )  # fmt: skip
        hwm = 0
        while True:
            # The command's own high-water mark (VmHWM, since its exec). wait4's ru_maxrss is
            # no good here: the kernel carries the forking process's peak (pytest's, hundreds
            # of MiB late in a run) across exec into the child's.
            hwm = max(hwm, _vm_hwm_kib(proc.pid))
            pid, status, _ = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() - t0 > timeout:
                proc.kill()
                os.wait4(proc.pid, 0)
                pytest.fail(f"{' '.join(cmd)} still running after {timeout} s")
            time.sleep(0.02)
        took = time.monotonic() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)  # Popen must not reap it again
        out.seek(0)
        err.seek(0)
        return Run(proc.returncode, out.read(), err.read(), took, hwm)


def _vm_hwm_kib(pid: int) -> int:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:  # it has just exited
        return 0
    line = next((x for x in status.splitlines() if x.startswith("VmHWM:")), "VmHWM: 0 kB")
    return int(line.split()[1])
