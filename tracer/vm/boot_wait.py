"""Waiting for a launched guest: its progress lines while it boots, and how slow it came up."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tracer import slowdown
from tracer.errors import LabError
from tracer.vm.boot import KernelImage, VmConfig, kvm_usable
from tracer.vm.qemu_proc import QemuProc, find_qemu

# Boot time of an idle 2-CPU host (README: 30-50 s emulated): the measure of a slow guest.
REFERENCE_BOOT_S = {True: 10.0, False: 45.0}  # by KVM
QUIET_NOTE_S = 10.0  # say "still booting" after this long without a progress line


@dataclass(frozen=True)
class Booted:
    seconds: float
    qemu: QemuProc | None
    slowdown: float  # how much slower than the reference this guest runs (>= 1)


def console_tail(console: Path) -> str:
    """The console's last three lines, for the one line that says why the guest failed."""
    try:
        lines = console.read_text(errors="replace").splitlines()
    except OSError:
        return "no console output"
    tail = [line.strip() for line in lines if line.strip()][-3:]
    return " | ".join(tail) or "no console output"


def wait_for_boot(vng: subprocess.Popen[bytes], share: Path, console: Path, began: float,
                  kernel: KernelImage, config: VmConfig,
                  progress: Callable[[str], None]) -> Booted:
    """Until the guest's agent says ready (a file in the share), passing on its progress."""
    kvm = kvm_usable() if config.kvm is None else config.kvm
    accel = "KVM" if kvm else "software emulation (no KVM: ~30 s)"
    # A loaded host boots slower: give the boot as much more time as the load says.
    boot_timeout = config.boot_timeout_s * slowdown.host_load()
    progress(f"booting {kernel.version} with {accel}")
    qemu: QemuProc | None = None
    seen_lines = 0
    last_note = began
    while not (share / "ready").exists():
        now = time.monotonic()
        if vng.poll() is not None:
            raise LabError(
                f"the VM exited during boot (rc {vng.returncode}): {console_tail(console)}"
            )
        if now - began > boot_timeout:
            raise LabError(
                f"the VM did not come up within {boot_timeout:.0f} s (host load "
                f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs): {console_tail(console)}"
            )
        if qemu is None:
            qemu = find_qemu(vng.pid, share)
        lines = _progress_lines(share)
        for line in lines[seen_lines:]:
            progress(f"{line} ({now - began:.0f} s)")
            last_note = now
        seen_lines = len(lines)
        if now - last_note >= QUIET_NOTE_S:
            progress(f"still booting ({now - began:.0f} s)")
            last_note = now
        time.sleep(0.2)
    seconds = time.monotonic() - began
    if qemu is None:
        qemu = find_qemu(vng.pid, share)
    slower = max(slowdown.from_boot(seconds, REFERENCE_BOOT_S[kvm]), slowdown.host_load())
    progress(f"guest ready in {seconds:.0f} s; waits in the guest scaled x{slower:.1f}")
    return Booted(seconds, qemu, slower)


def _progress_lines(share: Path) -> list[str]:
    try:
        return (share / "progress").read_text().splitlines()
    except OSError:
        return []
