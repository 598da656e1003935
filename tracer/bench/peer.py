"""The manual peer: `tcpdump -w` in every netns of the lab's path, as users do it today."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tracer.errors import LabError
from tracer.lab import namespaces
from tracer.lab.topology import BACKENDS, CLIENT, HOST, INGRESS, OVERLAY, SBOX, VIP_CLIENT

# The netns a request of each lab mode crosses.
PATH_NETNS = {
    "mesh": (CLIENT, HOST, SBOX, INGRESS, *BACKENDS),
    "vip": (VIP_CLIENT, OVERLAY, *BACKENDS),
}
PCAP_FILTER = "tcp port 8080 or tcp port 80"
READY_S = 10.0
_TICK = os.sysconf("SC_CLK_TCK")


@dataclass
class PeerCapture:
    procs: list[subprocess.Popen[bytes]]

    def cpu_s(self) -> float:
        """CPU time the tcpdumps used so far (user + system)."""
        total = 0
        for p in self.procs:
            try:
                fields = Path(f"/proc/{p.pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            total += int(fields[11]) + int(fields[12])  # utime, stime
        return total / _TICK


def _wait_listening(proc: subprocess.Popen[bytes], netns: str) -> None:
    """tcpdump says "listening on" once its capture is attached: that is readiness."""
    assert proc.stderr is not None
    deadline = time.monotonic() + READY_S
    seen = b""
    os.set_blocking(proc.stderr.fileno(), False)
    while b"listening on" not in seen:
        if proc.poll() is not None or time.monotonic() > deadline:
            why = seen.decode(errors="replace").strip() or f"not listening after {READY_S:.0f} s"
            raise LabError(f"tcpdump in {netns} did not start: {why}")
        chunk = proc.stderr.read()
        if chunk:
            seen += chunk
        else:
            time.sleep(0.01)


@contextmanager
def tcpdump_everywhere(mode: str, out_dir: Path) -> Iterator[PeerCapture]:
    """tcpdump -i any -s 128 -U -w in every netns of the mode's path, until the block ends."""
    exe = shutil.which("tcpdump")
    if exe is None:
        raise LabError("tcpdump is missing: run scripts/setup")
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for netns in PATH_NETNS[mode]:
            argv = namespaces.exec_argv(netns, [exe, "-i", "any", "-s", "128", "-U", "-w",
                                                str(out_dir / f"{netns}.pcap"), PCAP_FILTER])
            procs.append(subprocess.Popen(argv, stdin=subprocess.DEVNULL,
                                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE))
            _wait_listening(procs[-1], netns)
        yield PeerCapture(procs)
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
            if p.stderr is not None:
                p.stderr.close()
