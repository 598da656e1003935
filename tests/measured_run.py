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
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
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
        return Run(proc.returncode, out.read(), err.read(), took, usage.ru_maxrss)
