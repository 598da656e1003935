"""The backends' HTTP servers: daemons started in their netns, tracked by pid files."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import time
from pathlib import Path

from tracer.errors import LabError
from tracer.lab import namespaces
from tracer.lab.topology import RUN_DIR, TASK_PORT, short_name

log = logging.getLogger(__name__)

SERVER_MODULE = "tracer.lab.http_backend"
READY_TIMEOUT_S = 10.0


def pidfile(netns: str) -> Path:
    return RUN_DIR / f"{short_name(netns)}.pid"


def _is_our_server(pid: int, netns: str) -> bool:
    """The pid still runs our server for `netns` (not a process that reused the pid)."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return SERVER_MODULE.encode() in argv and short_name(netns).encode() in argv


def running_pid(netns: str) -> int | None:
    try:
        pid = int(pidfile(netns).read_text())
    except (OSError, ValueError):
        return None
    return pid if _is_our_server(pid, netns) else None


def start(netns: str) -> int:
    """Start the server in `netns` detached from us; returns its pid once it listens."""
    RUN_DIR.mkdir(parents=True, exist_ok=True)
    pidfile(netns).unlink(missing_ok=True)
    argv = namespaces.python_argv(
        SERVER_MODULE,
        "--name", short_name(netns),
        "--port", str(TASK_PORT),
        "--pidfile", str(pidfile(netns)),
    )  # fmt: skip
    log_path = RUN_DIR / f"{short_name(netns)}.log"
    with log_path.open("ab") as logf:
        # setsid -f: the server is nobody's child here (no zombie to reap) and Ctrl-C in our
        # terminal does not reach it; its pid comes from the pid file it writes when listening.
        subprocess.run(
            ["setsid", "-f", *namespaces.exec_argv(netns, argv)],
            stdin=subprocess.DEVNULL,
            stdout=logf,
            stderr=subprocess.STDOUT,
            env=namespaces.child_env(),
            check=True,
        )
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if (pid := running_pid(netns)) is not None:
            return pid
        time.sleep(0.02)
    lines = log_path.read_text(errors="replace").strip().splitlines()
    raise LabError(
        f"the HTTP server in {netns} did not start within {READY_TIMEOUT_S:.0f} s"
        f" ({lines[-1] if lines else 'no output'}): see {log_path}"
    )


def stop(pids: set[int]) -> list[int]:
    """SIGTERM, then SIGKILL what is left after 2 s; returns the pids that were running."""
    stopped = []
    for pid in pids:
        try:
            os.kill(pid, signal.SIGTERM)
            stopped.append(pid)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + 2.0
    remaining = set(stopped)
    while remaining and time.monotonic() < deadline:
        remaining = {pid for pid in remaining if Path(f"/proc/{pid}").exists()}
        time.sleep(0.02)
    for pid in remaining:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return stopped
