"""How much slower than its reference this machine runs, so that waits for slow steps scale.

The VM lab measures it: the guest's boot time against a reference boot, and the host's load.
Every job in the guest gets it as SWARMTRACE_SLOWDOWN; waits there (dockerd, swarm tasks,
tracer attach) are multiplied by it, and a wait that still runs out says how slow the machine
was, so a loaded machine fails with a reason instead of a false result.
"""

from __future__ import annotations

import math
import os

ENV = "SWARMTRACE_SLOWDOWN"
MAX_FACTOR = 10.0  # beyond this the machine is too slow to be worth waiting for


def clamp(value: float) -> float:
    return min(max(value, 1.0), MAX_FACTOR) if math.isfinite(value) else 1.0


def factor() -> float:
    """The slowdown this process was told (1.0: as fast as the reference, or not measured)."""
    try:
        return clamp(float(os.environ.get(ENV, "1")))
    except ValueError:
        return 1.0


def scaled(seconds: float) -> float:
    return seconds * factor()


def host_load() -> float:
    """Runnable work per CPU over the last minute (1.0 or less: the CPUs are ours)."""
    return clamp(os.getloadavg()[0] / (os.cpu_count() or 1))


def from_boot(boot_seconds: float, reference_s: float) -> float:
    """The slowdown a boot of boot_seconds shows against a reference boot."""
    return clamp(boot_seconds / reference_s)


def note() -> str:
    """' (waits scaled xF for a slow machine)' when scaled, for messages about timeouts."""
    f = factor()
    return f" (waits scaled x{f:.1f}: this machine runs slower than the reference)" if f > 1 else ""
