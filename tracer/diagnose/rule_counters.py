"""Which netfilter rule dropped it: the packet counters of every DROP/REJECT rule and DROP
policy in a netns, read before and after a request failed. Read-only (`iptables-save -c`),
for iptables-nft and iptables-legacy alike; a rule whose counter rose while the request was
in flight is the one that dropped its packets (on a busy host, one of them)."""

from __future__ import annotations

import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

from tracer.diagnose.kernel_state import IPTABLES
from tracer.enrich.docker_topology import docker_netns_dirs
from tracer.enrich.netns_names import NETNS_DIRS, ROOT_NETNS
from tracer.enrich.nsenter import run_in

TABLES = ("raw", "mangle", "nat", "filter")
KEEP = 8  # snapshots kept per netns: a failing request starts after one of them

_RULE = re.compile(r"^\[(\d+):\d+\] (-A (\S+) .*-j (DROP|REJECT)\b.*)$")
_POLICY = re.compile(r"^:(\S+) (DROP) \[(\d+):\d+\]$")


def counters(netns: Path) -> dict[str, int]:
    """'<table> <rule or chain policy>' -> packets, for every dropping rule and policy."""
    out: dict[str, int] = {}
    for flavour, tool in IPTABLES.items():
        if shutil.which(f"{tool}-save") is None:
            continue
        res = run_in(netns, [f"{tool}-save", "-c"])
        if res is None:
            continue
        table = ""
        for line in res.stdout.splitlines():
            if line.startswith("*"):
                table = line[1:]
            elif table in TABLES and (m := _RULE.match(line)):
                out[f"{flavour} {table}: {m.group(2)}"] = int(m.group(1))
            elif table in TABLES and (m := _POLICY.match(line)):
                out[f"{flavour} {table}: {m.group(1)} policy DROP"] = int(m.group(3))
    return out


class RuleCounters:
    """Snapshots of the dropping rules per netns inode; `dropped_since` names what rose."""

    def __init__(self) -> None:
        self._snaps: dict[int, list[tuple[int, dict[str, int]]]] = {}
        for ino, path in netns_files().items():
            self._snaps[ino] = [(time.monotonic_ns(), counters(path))]

    def dropped_since(self, netns_inode: int, start_ns: int) -> list[str]:
        """Dropping rules of the netns whose packet counters rose since before start_ns."""
        path = netns_files().get(netns_inode)
        if path is None:
            return []
        now = counters(path)
        snaps = self._snaps.setdefault(netns_inode, [])
        before = next((c for ts, c in reversed(snaps) if ts <= start_ns), {})
        snaps.append((time.monotonic_ns(), now))
        del snaps[:-KEEP]
        return [rule for rule, n in now.items() if n > before.get(rule, 0)]


def netns_files() -> dict[int, Path]:
    """Every netns a drop can be in, by inode: named, Docker's, and the root one."""
    found: dict[int, Path] = {}
    for d in (*NETNS_DIRS, *docker_netns_dirs()):
        for path in _files(d):
            try:
                found.setdefault(path.stat().st_ino, path)
            except OSError:
                continue
    found.setdefault(ROOT_NETNS.stat().st_ino, ROOT_NETNS)
    return found


def _files(d: Path) -> Iterator[Path]:
    try:
        yield from d.iterdir()
    except OSError:
        return
