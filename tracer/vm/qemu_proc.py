"""The guest's qemu process, found among vng's descendants and killed by pid, never by name."""

from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

from tracer.errors import LabError


@dataclass(frozen=True)
class QemuProc:
    """A process identified by pid AND start time, so a reused pid is never killed."""

    pid: int
    start: str

    @staticmethod
    def stat(pid: int) -> list[str] | None:
        try:
            raw = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            return None
        # Fields after "(comm)"; comm may contain spaces and parentheses.
        return raw[raw.rindex(")") + 2 :].split()

    @classmethod
    def of(cls, pid: int) -> QemuProc | None:
        fields = cls.stat(pid)
        return None if fields is None else cls(pid, fields[19])

    def alive(self) -> bool:
        fields = self.stat(self.pid)
        return fields is not None and fields[19] == self.start and fields[0] != "Z"

    def kill(self) -> None:
        """SIGTERM, then SIGKILL; raises if it survives both."""
        for sig, wait_s in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
            if not self.alive():
                return
            os.kill(self.pid, sig)
            deadline = time.monotonic() + wait_s
            while self.alive() and time.monotonic() < deadline:
                time.sleep(0.1)
        if self.alive():
            raise LabError(f"qemu (pid {self.pid}) survived SIGKILL; kill it by hand")

    def rss_mb(self) -> float | None:
        """Host memory the process uses."""
        try:
            status = Path(f"/proc/{self.pid}/status").read_text()
        except OSError:
            return None
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return None


def _descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        fields = QemuProc.stat(int(entry.name))
        if fields is not None:
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    found, todo = [], [root]
    while todo:
        kids = children.get(todo.pop(), [])
        found += kids
        todo += kids
    return found


def find_qemu(vng_pid: int, share: Path) -> QemuProc | None:
    """The qemu running our guest: vng also starts short-lived qemu probes, so match the share
    directory (unique per guest) on the command line."""
    for pid in _descendants(vng_pid):
        try:
            exe = os.readlink(f"/proc/{pid}/exe")
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if Path(exe).name.startswith("qemu-system") and any(
            str(share).encode() in arg for arg in cmdline
        ):
            return QemuProc.of(pid)
    return None
