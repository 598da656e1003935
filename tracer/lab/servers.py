"""The backends' HTTP servers: daemons started in their netns, tracked by pid files."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import time
from pathlib import Path

from tracer import slowdown
from tracer.errors import LabError
from tracer.lab import namespaces
from tracer.lab.topology import RUN_DIR, TASK_PORT, short_name

log = logging.getLogger(__name__)

SERVER_MODULE = "tracer.lab.http_backend"
READY_TIMEOUT_S = 60.0


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


def spawn(netns: str) -> None:
    """Start the server in `netns`, detached from us; wait_ready() tells when it listens."""
    RUN_DIR.mkdir(parents=True, exist_ok=True)
    pidfile(netns).unlink(missing_ok=True)
    argv = namespaces.python_argv(
        SERVER_MODULE,
        "--name", short_name(netns),
        "--port", str(TASK_PORT),
        "--pidfile", str(pidfile(netns)),
    )  # fmt: skip
    with _log_path(netns).open("ab") as logf:
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


def wait_ready(names: tuple[str, ...]) -> None:
    """Wait until every server listens; generous, a software-emulated VM starts Python slowly."""
    limit = slowdown.scaled(READY_TIMEOUT_S)
    deadline = time.monotonic() + limit
    waiting = list(names)
    while waiting and time.monotonic() < deadline:
        waiting = [n for n in waiting if running_pid(n) is None]
        time.sleep(0.02)
    if waiting:
        path = _log_path(waiting[0])
        lines = path.read_text(errors="replace").strip().splitlines() if path.exists() else []
        raise LabError(
            f"the HTTP server in {waiting[0]} did not start within {limit:.0f} s{slowdown.note()}"
            f" ({lines[-1] if lines else 'no output'}): see {path}"
        )


def _log_path(netns: str) -> Path:
    return RUN_DIR / f"{short_name(netns)}.log"


def _running(pid: int) -> bool:
    """Alive and not a zombie waiting for init to reap it."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


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
        remaining = {pid for pid in remaining if _running(pid)}
        time.sleep(0.02)
    for pid in remaining:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return stopped
