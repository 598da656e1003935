"""Finding network namespaces to hook, and running code inside one of them."""

from __future__ import annotations

import ctypes
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

CLONE_NEWNET = 0x40000000
# Named netns (ip netns), Docker's sandboxes (ingress_sbox, lb_*, 1-*, containers).
NETNS_DIRS = (Path("/var/run/netns"), Path("/var/run/docker/netns"))

_libc = ctypes.CDLL(None, use_errno=True)


def inode(path: Path) -> int:
    return os.stat(path).st_ino


@dataclass(frozen=True)
class NetnsScope:
    """The netns of one node when several share a kernel (the native swarm lab: a dockerd
    in a netns): its own root netns and the directories of its netns files. No /proc scan."""

    host: Path
    dirs: tuple[Path, ...]


def discover(scan_proc: bool = True, scope: NetnsScope | None = None) -> dict[int, Path]:
    """Every netns we can see (or of `scope`), by inode -> one path that opens it."""
    found: dict[int, Path] = {}
    self_ns = scope.host if scope is not None else Path("/proc/self/ns/net")
    found[inode(self_ns)] = self_ns
    if scope is not None:
        scan_proc = False
    for d in scope.dirs if scope is not None else NETNS_DIRS:
        try:
            entries = list(os.scandir(d))
        except OSError:
            continue
        for e in entries:
            try:
                found.setdefault(os.stat(e.path).st_ino, Path(e.path))
            except OSError:
                continue  # being created or removed right now
    if scan_proc:
        # Containers started without a bind-mounted netns file are only reachable via a pid.
        for pid in os.listdir("/proc"):
            if not pid.isdigit():
                continue
            p = Path("/proc", pid, "ns", "net")
            try:
                found.setdefault(os.stat(p).st_ino, p)
            except OSError:
                continue
    return found


def overlays_present(scope: NetnsScope | None = None) -> bool:
    """Whether Docker overlay sandboxes (ingress_sbox, 1-<network>) are where we look: only
    then can VXLAN cross this host, and the device tracepoints that see it pay their way."""
    for d in scope.dirs if scope is not None else NETNS_DIRS:
        try:
            if any(e.name == "ingress_sbox" or e.name.startswith("1-") for e in os.scandir(d)):
                return True
        except OSError:
            continue
    return False


@contextmanager
def entered(path: Path) -> Iterator[None]:
    """Run the body with the calling thread inside the netns at path, then come back."""
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    target = os.open(path, os.O_RDONLY)
    try:
        if _libc.setns(target, CLONE_NEWNET):
            e = ctypes.get_errno()
            raise OSError(e, f"setns {path}: {os.strerror(e)}")
        try:
            yield
        finally:
            if _libc.setns(home, CLONE_NEWNET):
                e = ctypes.get_errno()
                raise OSError(e, f"cannot return to the original netns: {os.strerror(e)}")
    finally:
        os.close(target)
        os.close(home)
