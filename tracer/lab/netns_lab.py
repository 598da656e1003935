"""Bring the lab up and down: netns shaped like a Swarm node's routing mesh and VIP, no Docker."""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Literal

from tracer.errors import LabError
from tracer.lab import links, namespaces, rules, servers
from tracer.lab.balancer import (
    BALANCERS,
    IPVS_NOTE,
    STAND_IN_NOTE,
    has_ipvs,
    install_ipvs,
    load_ipvs,
    unload_ipvs,
)
from tracer.lab.topology import (
    BACKENDS,
    CLIENT,
    MESH_TARGET,
    NAMESPACES,
    RUN_DIR,
    VIP_CLIENT,
    VIP_TARGET,
    short_name,
)

log = logging.getLogger(__name__)

STATE_FILE = RUN_DIR / "lab.json"

LoadBalancer = Literal["ipvs", "stand-in"]


@dataclass(frozen=True)
class LabNetns:
    name: str
    inode: int  # as BPF programs see it (stat -L -c %i /var/run/netns/<name>)
    role: str


@dataclass(frozen=True)
class LabInfo:
    """A lab that is up: its netns, which load balancer it uses, and what to tell the user."""

    netns: tuple[LabNetns, ...]
    lb: LoadBalancer
    notes: tuple[str, ...]


def require_root() -> None:
    if os.geteuid() != 0:
        raise LabError("the lab needs root: run with sudo")


def require_up() -> LabInfo:
    # Built is enough: traffic into a lab whose server died shows the refusals.
    if (info := built()) is None:
        raise LabError("the lab is not up: run `swarmtrace lab up`")
    return info


def _notes(lb: LoadBalancer) -> tuple[str, ...]:
    return (
        STAND_IN_NOTE if lb == "stand-in" else IPVS_NOTE,
        f"routing mesh: {MESH_TARGET} from {CLIENT}; VIP: {VIP_TARGET} from {VIP_CLIENT}",
    )


def _read_state() -> dict[str, object]:
    try:
        state = json.loads(STATE_FILE.read_text())
    except (OSError, ValueError):
        return {}
    return state if isinstance(state, dict) else {}


def _write_state(lb: LoadBalancer, modules: list[str], complete: bool) -> None:
    # Inodes are kept so that `down` finds processes even in a netns whose name was lost.
    state = {
        "lb": lb,
        "complete": complete,
        "modules": modules,  # kernel modules the lab loaded, unloaded by `down`
        "netns": {ns.name: namespaces.inode(ns.name) for ns in NAMESPACES},
    }
    tmp = STATE_FILE.with_suffix(".tmp")
    tmp.write_text(json.dumps(state))
    tmp.replace(STATE_FILE)


def status() -> LabInfo | None:
    """The lab if it is up and whole (every netns and server as `up` left them), else None."""
    info = built()
    if info is None or any(servers.running_pid(b) is None for b in BACKENDS):
        return None
    return info


def built() -> LabInfo | None:
    """The lab if `up` built it and its netns are all there, its servers running or not
    (`check` looks into a lab whose server died)."""
    state = _read_state()
    recorded = state.get("netns")
    lb = state.get("lb")
    if (
        not state.get("complete")
        or not isinstance(recorded, dict)
        or lb not in ("ipvs", "stand-in")
    ):
        return None
    found = []
    for ns in NAMESPACES:
        ino = namespaces.inode(ns.name)
        if ino == 0 or recorded.get(ns.name) != ino:
            return None
        found.append(LabNetns(ns.name, ino, ns.role))
    return LabInfo(tuple(found), lb, _notes(lb))


def _build() -> LabInfo:
    lb: LoadBalancer = "ipvs" if has_ipvs() else "stand-in"
    RUN_DIR.mkdir(parents=True, exist_ok=True)
    modules: list[str] = []
    _write_state(lb, modules, complete=False)
    if lb == "ipvs":
        modules = load_ipvs()
        _write_state(lb, modules, complete=False)
    for ns in NAMESPACES:
        namespaces.create(ns.name)
    _write_state(lb, modules, complete=False)
    links.build()
    rules.install(stand_in=lb == "stand-in", ipvs=lb == "ipvs")
    if lb == "ipvs":
        for balancer in BALANCERS:
            install_ipvs(balancer)
    for backend in BACKENDS:
        servers.spawn(backend)
    servers.wait_ready(BACKENDS)
    _write_state(lb, modules, complete=True)
    if (info := status()) is None:
        raise LabError("the lab was built but does not check out: run `swarmtrace lab down`")
    return info


@contextmanager
def _no_sigint() -> Iterator[None]:
    """A second Ctrl-C must not stop the tear-down of a half-built lab."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def up() -> LabInfo:
    """Build the lab; reuse a healthy one, tear down and rebuild a half-built one."""
    require_root()
    if (info := status()) is not None:
        log.debug("lab already up, reusing it")
        return info
    if namespaces.lab_namespaces() or RUN_DIR.exists():
        log.info("removing a half-built lab first")
        down()
    try:
        return _build()
    except BaseException:
        # Failure, Ctrl-C or SIGTERM turned into an exception: leave nothing behind.
        with _no_sigint():
            down()
        raise


def down() -> list[str]:
    """Remove every lab netns, its processes and state; also after a crash; idempotent."""
    require_root()
    removed: list[str] = []
    note = removed.append

    state = _read_state()
    recorded = state.get("netns")
    inodes = {namespaces.inode(n) for n in namespaces.lab_namespaces()}
    if isinstance(recorded, dict):
        inodes |= {int(i) for i in recorded.values() if isinstance(i, int)}
    inodes.discard(0)
    labels = {pid: f"server {path_name}" for path_name, pid in _server_pids().items()}
    pids = set(namespaces.pids_in(inodes)) | set(labels)
    for pid in sorted(servers.stop(pids)):
        note(f"{labels.get(pid, 'process')} (pid {pid})")
    for name in namespaces.lab_namespaces():
        namespaces.remove(name)
        note(f"netns {name}")
    modules = state.get("modules")
    if isinstance(modules, list) and modules:
        unload_ipvs([str(m) for m in modules])
        note(f"kernel modules {', '.join(map(str, modules))}")
    if RUN_DIR.exists():
        shutil.rmtree(RUN_DIR)
        note(str(RUN_DIR))
    return removed


def _server_pids() -> dict[str, int]:
    """backend name -> pid of its server, from the pid files (found even if its netns is gone)."""
    found = {}
    for backend in BACKENDS:
        if (pid := servers.running_pid(backend)) is not None:
            found[short_name(backend)] = pid
    return found
