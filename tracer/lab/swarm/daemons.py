"""Starting and stopping the lab's dockerd processes (one per node)."""

from __future__ import annotations

import logging
import os
import shlex
import signal
import subprocess
import time
from contextlib import closing, suppress
from pathlib import Path

import docker

from tracer import slowdown
from tracer.errors import LabError
from tracer.lab.swarm.hoststate import CGROUP_ROOT, cgroup_mounts
from tracer.lab.swarm.layout import LabNode
from tracer.procs import cmdline, pids_named

log = logging.getLogger(__name__)

DOCKERD = Path("/usr/sbin/dockerd")
# Nothing may leave the machine: pulls and registry lookups hit a closed local port and fail
# fast; the engine then uses the locally imported image without trying to pull at all.
DAEMON_ENV = {
    "HTTP_PROXY": "http://127.0.0.1:9",
    "HTTPS_PROXY": "http://127.0.0.1:9",
    "NO_PROXY": "localhost,127.0.0.0/8",
    "DOCKER_SERVICE_PREFER_OFFLINE_IMAGE": "1",
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
}
START_TIMEOUT_S = 120.0  # dockerd takes ~40 s in the software-emulated VM
STOP_TIMEOUT_S = 20.0


def _launch_script(node: LabNode) -> str:
    """sh that sets the node's hostname (its swarm node name) and execs dockerd.

    `ip netns exec` remounts /sys for the netns, which hides the cgroup mounts dockerd needs:
    mount the same hierarchies again inside the node's mount namespace.
    """
    steps = ['hostname "$0"']
    if node.netns is not None:
        mounts = cgroup_mounts()
        if all(point != CGROUP_ROOT for _, _, point in mounts):  # v1: one dir per hierarchy
            steps.append(f"mount -t tmpfs -o mode=755 cgroup {CGROUP_ROOT}")
        for fstype, opts, point in mounts:
            o = f"-o {shlex.quote(opts)} " if opts else ""
            steps.append(f"mkdir -p {shlex.quote(point)}")
            steps.append(f"mount -t {fstype} {o}{fstype} {shlex.quote(point)}")
    steps.append('exec "$@"')
    return " && ".join(steps)


def dockerd_argv(node: LabNode) -> list[str]:
    return [
        str(DOCKERD), "-H", node.socket, "--data-root", str(node.data_root),
        "--exec-root", str(node.exec_root), "--pidfile", str(node.pidfile),
        "--cgroup-parent", node.cgroup_parent,
        # Swarm services use overlay + docker_gwbridge only: no docker0 to clean up.
        "--bridge", "none", "--shutdown-timeout", "3", "--log-level", "warn",
    ]


def start(node: LabNode) -> int:
    """Start node's dockerd (in its netns and UTS namespace); returns its pid when it answers."""
    if not DOCKERD.exists():
        raise LabError(f"{DOCKERD} is missing: run scripts/setup (it installs docker.io)")
    node.exec_root.mkdir(parents=True, exist_ok=True)
    node.data_root.mkdir(parents=True, exist_ok=True)
    argv = ["unshare", "--uts", "--", "sh", "-c", _launch_script(node), node.name,
            *dockerd_argv(node)]
    if node.netns is not None:
        argv = ["ip", "netns", "exec", node.netns, *argv]
    limit = slowdown.scaled(START_TIMEOUT_S)
    deadline = time.monotonic() + limit
    proc = _spawn(argv, node)
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            # dockerd gives its containerd a fixed ~10 s to start, too short in the emulated
            # VM; the containerd it started keeps coming up and the next dockerd reuses it.
            if "timeout waiting for containerd" in _tail(node.logfile):
                log.info("%s: containerd was slow to start, starting dockerd again", node.name)
                proc = _spawn(argv, node)
                continue
            raise LabError(f"dockerd for {node.name} exited ({proc.returncode}): "
                           f"see {node.logfile}: {_tail(node.logfile)}")
        try:
            with closing(docker.DockerClient(base_url=node.socket, timeout=5)) as client:
                client.ping()
            return proc.pid
        except docker.errors.DockerException:
            time.sleep(0.3)
    raise LabError(f"dockerd for {node.name} did not answer within {limit:.0f} s"
                   f"{slowdown.note()}: see {node.logfile}")


def _spawn(argv: list[str], node: LabNode) -> subprocess.Popen[bytes]:
    with node.logfile.open("ab") as logf:
        # Every wrapper execs, so the child's pid is dockerd's pid.
        return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=logf, stderr=logf,
                                env=DAEMON_ENV, start_new_session=True)


def _tail(path: Path) -> str:
    try:
        lines = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return lines[-1] if lines else ""


def _cmdline(pid: int) -> str:
    return " ".join(cmdline(pid))


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    if state == "Z":
        with suppress(ChildProcessError):  # our own child (up and down in one process)
            os.waitpid(pid, os.WNOHANG)
        return False
    return True


def processes_of(node: LabNode) -> list[int]:
    """Pids whose command line names node's exec root: its dockerd, containerd and shims."""
    mine = []
    for p in Path("/proc").iterdir():
        if p.name.isdigit() and str(node.exec_root) in _cmdline(int(p.name)):
            mine.append(int(p.name))
    return mine


def foreign_dockerd(nodes: list[LabNode]) -> int | None:
    """Pid of a running dockerd the lab did not start, if any."""
    for pid in pids_named("dockerd"):
        cmd = _cmdline(pid)
        if not any(str(n.exec_root) in cmd for n in nodes) and _alive(pid):
            return pid
    return None


def stop(node: LabNode, problems: list[str]) -> None:
    """SIGTERM node's dockerd (it stops its containerd), then SIGKILL whatever of it is left."""
    pids = [pid for pid in processes_of(node) if Path(f"/proc/{pid}/comm").exists()]
    daemons = [pid for pid in pids if "dockerd" in _cmdline(pid).split(" ", 1)[0]]
    for pid in daemons:
        _signal(pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT_S
    while any(_alive(pid) for pid in daemons) and time.monotonic() < deadline:
        time.sleep(0.2)
    for pid in processes_of(node):
        if _alive(pid):
            log.info("killing leftover %s process %d: %s", node.name, pid, _cmdline(pid)[:80])
            _signal(pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while (left := [p for p in processes_of(node) if _alive(p)]) and time.monotonic() < deadline:
        time.sleep(0.1)
    if left:
        problems.append(f"{node.name}: processes {left} did not exit")


def _signal(pid: int, sig: signal.Signals) -> None:
    with suppress(ProcessLookupError):
        os.kill(pid, sig)
