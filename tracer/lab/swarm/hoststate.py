"""What the machine looked like before the swarm lab, and putting it back afterwards.

dockerd changes the root netns (ip_forward=1, FORWARD policy DROP, DOCKER* chains, bridges) and
does not undo it on exit. Only what Docker or the lab made is removed: other engineers' rules,
links and sysctls changed by others since are left alone where they can be told apart.
"""

from __future__ import annotations

import logging
import os
import shlex
import shutil
import signal
import subprocess
import time
from contextlib import suppress
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

# Top-level files of these /proc/sys directories are compared before/after.
SYSCTL_DIRS = ("net/ipv4", "net/ipv4/conf/all", "net/ipv4/conf/default", "net/ipv6/conf/all",
               "net/ipv6/conf/default", "net/bridge", "net/netfilter", "net/core")
FIREWALLS = ("iptables", "ip6tables")
TABLES = ("filter", "nat", "mangle", "raw")
DOCKER_LINKS = ("docker0", "docker_gwbridge")
CGROUP_ROOT = "/sys/fs/cgroup"


def _read_sysctls() -> dict[str, str]:
    out: dict[str, str] = {}
    for d in SYSCTL_DIRS:
        base = Path("/proc/sys") / d
        try:
            entries = list(base.iterdir())
        except OSError:
            continue
        for f in entries:
            try:
                if f.is_file() and os.access(f, os.W_OK):
                    out[str(f.relative_to("/proc/sys"))] = f.read_text().strip()
            except OSError:  # write-only or gone
                continue
    return out


def _rules(fw: str, table: str) -> list[str]:
    try:
        res = subprocess.run([fw, "-w", "-t", table, "-S"], capture_output=True, text=True,
                             check=False)
    except FileNotFoundError:
        return []
    return res.stdout.splitlines() if res.returncode == 0 else []


def _modules() -> list[str]:
    try:
        return [line.split()[0] for line in Path("/proc/modules").read_text().splitlines()]
    except OSError:  # a kernel without loadable modules
        return []


def _links() -> list[str]:
    return sorted(p.name for p in Path("/sys/class/net").iterdir())


@dataclass(frozen=True)
class HostState:
    sysctls: dict[str, str]
    rules: dict[str, list[str]]  # "iptables/filter" -> `-S` lines
    links: list[str]
    paths: dict[str, bool]  # path -> existed before
    modules: list[str]  # loaded kernel modules

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> HostState:
        return cls(**d)


def record(paths: list[Path]) -> HostState:
    """Read the state the lab may change; `paths` are files/dirs Docker or the lab may create."""
    return HostState(
        sysctls=_read_sysctls(),
        rules={f"{fw}/{t}": _rules(fw, t) for fw in FIREWALLS for t in TABLES},
        links=_links(),
        modules=_modules(),
        paths={str(p): p.exists() or p.is_symlink() for p in paths},
    )


def _fw(fw: str, table: str, args: list[str], problems: list[str]) -> None:
    res = subprocess.run([fw, "-w", "-t", table, *args], capture_output=True, text=True,
                         check=False)
    if res.returncode != 0:
        problems.append(f"{fw} -t {table} {shlex.join(args)}: {res.stderr.strip()}")


def restore_firewall(before: HostState, problems: list[str]) -> None:
    """Remove Docker's rules and chains, put back built-in chain policies."""
    for key, old in before.rules.items():
        fw, table = key.split("/")
        old_set = set(old)
        now = _rules(fw, table)
        for line in now:
            if line.startswith("-A ") and line not in old_set and "docker" in line.lower():
                _fw(fw, table, ["-D", *shlex.split(line)[1:]], problems)
        chains = [line.split()[1] for line in now
                  if line.startswith("-N ") and line not in old_set
                  and line.split()[1].upper().startswith("DOCKER")]
        for chain in chains:
            _fw(fw, table, ["-F", chain], problems)
        for chain in chains:
            _fw(fw, table, ["-X", chain], problems)
        for line in old:
            if line.startswith("-P ") and line not in now:
                _fw(fw, table, line.split(), problems)


def unload_modules(before: HostState) -> None:
    """Unload modules loaded since (ip_vs, vxlan, br_netfilter ...); ones in use stay."""
    for mod in reversed([m for m in _modules() if m not in set(before.modules)]):
        res = subprocess.run(["modprobe", "-r", "-q", mod], capture_output=True, check=False)
        if res.returncode != 0:
            log.info("module %s stays loaded (in use)", mod)


def restore_sysctls(before: HostState, problems: list[str]) -> None:
    now = _read_sysctls()
    for key, value in before.sysctls.items():
        if now.get(key, value) != value:
            try:
                (Path("/proc/sys") / key).write_text(value + "\n")
                log.info("restored sysctl %s = %s (was %s)", key, value, now[key])
            except OSError as err:
                problems.append(f"sysctl {key}: {err}")


def remove_links(before: HostState, names: tuple[str, ...], problems: list[str]) -> None:
    """Delete links among `names` that did not exist before."""
    existed = set(before.links)
    for name in names:
        if name not in existed and Path("/sys/class/net", name).exists():
            res = subprocess.run(["ip", "link", "del", name], capture_output=True, text=True,
                                 check=False)
            if res.returncode != 0 and Path("/sys/class/net", name).exists():
                problems.append(f"ip link del {name}: {res.stderr.strip()}")


def mounts_under(prefixes: list[Path]) -> list[str]:
    """Mount points at or below any prefix, deepest first."""
    found = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        # mountinfo escapes space, tab, newline and backslash as octal.
        point = line.split()[4].encode().decode("unicode_escape")
        if any(point == str(p) or point.startswith(f"{p}/") for p in prefixes):
            found.append(point)
    return sorted(found, key=lambda p: p.count("/"), reverse=True)


def remove_paths(before: HostState, problems: list[str]) -> None:
    """Unmount and delete paths that did not exist before the lab."""
    new = [Path(p) for p, existed in before.paths.items() if not existed]
    for point in mounts_under(new):
        res = subprocess.run(["umount", "-l", point], capture_output=True, text=True, check=False)
        if res.returncode != 0:
            problems.append(f"umount {point}: {res.stderr.strip()}")
    for path in new:
        try:
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            elif path.exists() or path.is_symlink():
                path.unlink()
        except OSError as err:
            problems.append(f"remove {path}: {err}")


def cgroup_mounts() -> list[tuple[str, str, str]]:
    """(fstype, options, mount point) of the cgroup hierarchies (v1 dirs, or the v2 root)."""
    out = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        pre, _, post = line.partition(" - ")
        point = pre.split()[4]
        fstype, _src, opts = post.split()[:3]
        if fstype in ("cgroup", "cgroup2") and (point == CGROUP_ROOT
                                                or point.startswith(f"{CGROUP_ROOT}/")):
            keep = [o for o in opts.split(",") if o not in ("rw", "ro")]
            if fstype == "cgroup" and all(o.startswith("name=") for o in keep):
                keep.insert(0, "none")  # a named hierarchy without controllers
            out.append((fstype, ",".join(keep), point))
    return out


def _cgroup_pids(tops: list[Path]) -> set[int]:
    pids: set[int] = set()
    for top in tops:
        for procs in top.rglob("cgroup.procs"):
            try:
                pids |= {int(p) for p in procs.read_text().split()}
            except (OSError, ValueError):
                continue
    return pids


def remove_cgroups(parents: list[str], problems: list[str]) -> None:
    """Kill what is left in the lab's cgroups (container processes whose daemon is gone),
    then rmdir the cgroup directories dockerd made under --cgroup-parent, deepest first."""
    hierarchies = [Path(point) for _, _, point in cgroup_mounts()]
    tops = [h / p.lstrip("/") for h in hierarchies for p in parents]
    deadline = time.monotonic() + 5
    while (pids := _cgroup_pids(tops)) and time.monotonic() < deadline:
        for pid in pids:
            log.info("killing leftover container process %d", pid)
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.2)
    for top in tops:
        if top.is_dir():
            dirs = sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts))
            for d in [*dirs, top]:
                try:
                    d.rmdir()
                except OSError as err:
                    problems.append(f"rmdir {d}: {err}")
