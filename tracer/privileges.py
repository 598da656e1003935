"""Which Linux capabilities each probe backend needs, which ones this process has, and the one
line that says what to add.

Measured on 6.18 by running each step as root under a reduced capability bounding set:
- loading the tp_btf programs needs CAP_BPF and CAP_PERFMON (either alone: EPERM), or
  CAP_SYS_ADMIN, which includes both;
- loading a BPF netfilter program also needs CAP_NET_ADMIN (or CAP_SYS_ADMIN): without it the
  whole object is refused with EPERM; linking it into a netns then needs nothing more;
- setns into another netns (Docker's sandboxes) needs CAP_SYS_ADMIN, nothing else gives it;
- `iptables-save` (mangle rules, the names of fwmarks) needs CAP_NET_ADMIN.
Measured on Debian's 6.1 in the VM lab, for the bcc backend:
- with CAP_BPF and CAP_PERFMON, BCC loads but cannot attach its tracepoints (perf_event_open
  EACCES); with CAP_SYS_ADMIN alone everything attaches;
- IPVS's netlink table needs CAP_NET_ADMIN (EPERM without).
So both backends need CAP_SYS_ADMIN and CAP_NET_ADMIN; CAP_BPF and CAP_PERFMON come with
CAP_SYS_ADMIN, which also works on engines and kernels that know no CAP_BPF (Docker 20.10,
Linux < 5.8).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path

STATUS = Path("/proc/self/status")
CAP_LAST_CAP = Path("/proc/sys/kernel/cap_last_cap")


class Cap(IntEnum):
    NET_ADMIN = 12
    SYS_ADMIN = 21
    PERFMON = 38
    BPF = 39


@dataclass(frozen=True)
class Need:
    what: str  # what the capability is for, as the user reads it
    any_of: tuple[Cap, ...]  # one of these is enough


LOAD = Need("loading BPF programs", (Cap.BPF, Cap.SYS_ADMIN))
NAMES = Need("iptables and IPVS names", (Cap.NET_ADMIN,))
NETNS = Need("entering Docker's netns", (Cap.SYS_ADMIN,))
NEEDS: dict[str, tuple[Need, ...]] = {
    "core": (
        LOAD,
        Need("tracepoint programs", (Cap.PERFMON, Cap.SYS_ADMIN)),
        Need("BPF netfilter programs", (Cap.NET_ADMIN, Cap.SYS_ADMIN)),
        NAMES,
        NETNS,
    ),
    "bcc": (
        LOAD,
        Need("kprobes and tracepoints", (Cap.SYS_ADMIN,)),
        NAMES,
        NETNS,
    ),
}


@dataclass(frozen=True)
class Privileges:
    uid: int
    effective: frozenset[Cap]
    kernel_knows: frozenset[Cap]  # CAP_BPF and CAP_PERFMON exist since Linux 5.8

    def has(self, need: Need) -> bool:
        return any(c in self.effective for c in need.any_of)


def current() -> Privileges:
    """This process's effective capabilities (CapEff in /proc/self/status)."""
    mask = 0
    for line in STATUS.read_text().splitlines():
        if line.startswith("CapEff:"):
            mask = int(line.split()[1], 16)
    try:
        last = int(CAP_LAST_CAP.read_text())
    except (OSError, ValueError):
        last = max(Cap)
    return Privileges(
        uid=os.geteuid(),
        effective=frozenset(c for c in Cap if mask >> c & 1),
        kernel_knows=frozenset(c for c in Cap if c <= last),
    )


def missing(backend: str, privs: Privileges) -> tuple[Need, ...]:
    return tuple(n for n in NEEDS[backend] if not privs.has(n))


def caps_to_add(needs: tuple[Need, ...], privs: Privileges) -> list[Cap]:
    """The fewest capabilities that cover `needs`: those with no alternative first, since
    CAP_SYS_ADMIN (needed for setns) then covers CAP_BPF and CAP_PERFMON too."""
    chosen: list[Cap] = []
    for need in sorted(needs, key=lambda n: len(n.any_of)):
        if any(c in chosen for c in need.any_of):
            continue
        known = [c for c in need.any_of if c in privs.kernel_knows]
        chosen.append(known[0] if known else need.any_of[-1])
    return chosen


def explain(backend: str, privs: Privileges) -> str:
    """One line: which capabilities are missing, for what, and how to get them; '' if none."""
    needs = missing(backend, privs)
    if not needs:
        return ""
    add = caps_to_add(needs, privs)
    # Each need is listed under the first added capability that covers it.
    covers = {cap: [n.what for n in needs if next(c for c in add if c in n.any_of) == cap]
              for cap in add}
    parts = " and ".join(f"CAP_{cap.name} ({', '.join(covers[cap])})" for cap in add)
    flags = " ".join(f"--cap-add {c.name}" for c in add)
    how = ("run as root, or in a container add" if privs.uid != 0
           else "root here lacks them (a container?): add")
    return f"the {backend} backend needs {parts}: {how} {flags}"
