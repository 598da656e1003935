"""Reading processes from /proc: which run a given program, with what command line."""

from __future__ import annotations

from pathlib import Path


def cmdline(pid: int) -> list[str]:
    """argv of a process; empty when it is gone or unreadable."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return []


def pids_named(comm: str) -> list[int]:
    """Pids whose command name is `comm`, in pid order."""
    found = []
    for p in Path("/proc").iterdir():
        if not p.name.isdigit():
            continue
        try:
            if (p / "comm").read_text().strip() == comm:
                found.append(int(p.name))
        except OSError:
            continue  # exited while we looked
    return sorted(found)
