"""Pick the probe backend: bcc where kprobes, headers and BCC exist, else core."""

from __future__ import annotations

import importlib.util
import platform
from pathlib import Path

from tracer.errors import ProbeUnavailable
from tracer.source import EventSource, Filter


def bcc_missing() -> str | None:
    """Why the bcc backend cannot run here, or None when it can."""
    if not Path("/sys/kernel/debug/kprobes").exists() and not _kprobes_configured():
        return "this kernel has no kprobes (CONFIG_KPROBES unset)"
    release = platform.release()
    if not Path(f"/lib/modules/{release}/build").exists():
        return f"no kernel headers for {release} (install linux-headers-{release})"
    if importlib.util.find_spec("bcc") is None:
        return "BCC is not importable (install python3-bpfcc and use the venv from scripts/setup)"
    return None


def _kprobes_configured() -> bool:
    config = Path(f"/boot/config-{platform.release()}")
    try:
        return "CONFIG_KPROBES=y" in config.read_text()
    except OSError:
        return Path("/sys/bus/event_source/devices/kprobe").exists()


def choose(name: str) -> tuple[str, str]:
    """The backend to use for `--backend name`, and why."""
    missing = bcc_missing()
    if name == "bcc" and missing:
        raise ProbeUnavailable(f"the bcc backend cannot run: {missing}; use --backend core")
    if name == "auto":
        if missing is None:
            return "bcc", "kprobes, headers and BCC are available"
        return "core", f"bcc unavailable: {missing}"
    return name, "asked for"


def open_source(backend: str, flt: Filter) -> EventSource:
    """An unstarted source of the backend choose() picked ("core" or "bcc")."""
    if backend == "bcc":
        from tracer.probes.bcc import BccSource

        return BccSource(flt)
    from tracer.probes.core import CoreSource

    return CoreSource(flt)
