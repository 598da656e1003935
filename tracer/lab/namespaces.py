"""Named network namespaces: create, remove, find, run a command inside, find their processes."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
from pathlib import Path

from pyroute2 import netns

from tracer.errors import LabError
from tracer.lab.topology import NAMESPACES, NETNS_DIR

log = logging.getLogger(__name__)

# The tracer package's parent: children started with `python -m tracer.lab...` must import it
# even when swarmtrace runs from a source tree that is not installed.
_SOURCE_ROOT = str(Path(__file__).resolve().parents[2])


def lab_namespaces() -> list[str]:
    """The lab's netns that exist now, complete or not.

    Only this lab's own names: other labs share the prefix (the swarm lab's stlab-node2).
    """
    ours = {ns.name for ns in NAMESPACES}
    return sorted(n for n in netns.listnetns() if n in ours)


def inode(name: str) -> int:
    """The netns inode (what BPF programs see as the netns id); 0 if it is gone."""
    try:
        return (NETNS_DIR / name).stat().st_ino
    except FileNotFoundError:
        return 0


def create(name: str) -> None:
    # pyroute2 creates it in a forked helper: an interrupt landing meanwhile would let the helper
    # finish the netns after our tear-down has looked. Hold SIGINT/SIGTERM until it exists.
    old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    try:
        netns.create(name)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def remove(name: str) -> None:
    """Unmount and unlink a named netns; a half-created one (file only) is removed too."""
    with contextlib.suppress(FileNotFoundError):
        netns.remove(name)


def python_argv(module: str, *args: str) -> list[str]:
    """argv that runs one of the lab's modules with this interpreter."""
    return [sys.executable, "-m", module, *args]


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    path = env.get("PYTHONPATH")
    env["PYTHONPATH"] = f"{_SOURCE_ROOT}:{path}" if path else _SOURCE_ROOT
    return env


def exec_argv(name: str, argv: list[str]) -> list[str]:
    # `ip netns exec` execs the program: the pid we get is the program's own.
    return ["ip", "netns", "exec", name, *argv]


def run(name: str, argv: list[str], stdin: str | None = None) -> str:
    """Run argv inside netns `name`; its stdout, or LabError with its stderr."""
    proc = subprocess.run(
        exec_argv(name, argv), input=stdin, capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        # The first line says what went wrong; later ones are usage hints.
        detail = proc.stderr.strip().splitlines()
        raise LabError(
            f"{' '.join(argv[:2])} failed in netns {name}: "
            f"{detail[0] if detail else f'exit {proc.returncode}'}"
        )
    return proc.stdout


def pids_in(inodes: set[int]) -> list[int]:
    """Processes whose network namespace is one of `inodes` (the lab's servers and clients)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if (entry / "ns" / "net").stat().st_ino in inodes:
                found.append(int(entry.name))
        except OSError:
            continue  # exited meanwhile, or a kernel thread
    return found
