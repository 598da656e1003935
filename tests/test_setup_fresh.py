"""README's two commands on a really fresh Debian 12: a minbase bookworm rootfs (mmdebstrap) run
as a container, with a clean clone of this checkout, runs `scripts/setup`, then `replay --sample`
and `doctor`. The machines here have every tool preinstalled, so only this can see what a
minimal Debian lacks (it once stopped at `make`, rc 127).

Minutes long: every step has a deadline and fails saying which step was slow. The rootfs is
cached in /var/cache/swarmtrace, keyed on its recipe. The container runs in the swarm lab's
node1 dockerd (hold the lab lock), which is stopped and undone afterwards.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager, suppress
from pathlib import Path

import docker
import pytest

from tracer.lab.swarm import daemons, hoststate
from tracer.lab.swarm.lab import DOCKER_PATHS
from tracer.lab.swarm.lab import load as swarm_lab
from tracer.lab.swarm.layout import DATA_DIR, STATE_DIR, lab_nodes

REPO = Path(__file__).resolve().parents[1]
RECIPE = ("--variant=minbase", "--include=ca-certificates,git,python3", "--mode=root", "bookworm")
CACHE = Path("/var/cache/swarmtrace")
IMAGE = ("swarmtrace-fresh-bookworm", "test")
CONTAINER = "swarmtrace-fresh-setup"
# Without the host's package configuration apt and pip cannot reach their registries from
# inside (the registries are reached through a CA only the host trusts); mounted read-only.
HOST_CONFIG = ("/etc/apt", "/etc/ssl/certs", "/etc/pip.conf", "/etc/xdg/pip", "/opt/pypi",
               "/opt/pypi-more", "/opt/wheels")
PIP_ENV = ("PIP_CERT", "PIP_FIND_LINKS", "PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL",
           "PIP_DEFAULT_TIMEOUT", "PIP_DISABLE_PIP_VERSION_CHECK")
ROOTFS_S = 300  # measured 18-39 s
IMPORT_S = 180
# Each step in the container: (name, deadline in s, command). setup measured about 150 s.
STEPS = (
    ("scripts/setup", 1200, "scripts/setup"),
    ("replay --sample", 120, ".venv/bin/swarmtrace replay --sample --no-tui --count 3"),
    ("doctor", 120, ".venv/bin/swarmtrace doctor"),
)
MARK = "@@step"

pytestmark = [
    pytest.mark.docker,
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root: mmdebstrap, dockerd"),
    pytest.mark.skipif(not daemons.DOCKERD.exists(),
                       reason="docker.io is not installed (scripts/setup)"),
    pytest.mark.skipif(shutil.which("mmdebstrap") is None,
                       reason="mmdebstrap is not installed (scripts/setup)"),
]


def cached_rootfs() -> Path:
    """The minbase bookworm rootfs tarball, made once per recipe."""
    key = hashlib.sha256(" ".join(RECIPE).encode()).hexdigest()[:12]
    tar = CACHE / f"minbase-bookworm-{key}.tar"
    if tar.is_file():
        return tar
    CACHE.mkdir(parents=True, exist_ok=True)
    partial = tar.with_name(f"{tar.stem}.partial.tar")
    try:
        done = subprocess.run(["mmdebstrap", "-q", "--format=tar", *RECIPE, str(partial)],
                              capture_output=True,
                              text=True, timeout=ROOTFS_S, check=False)
    except subprocess.TimeoutExpired:
        partial.unlink(missing_ok=True)
        pytest.fail(f"mmdebstrap took more than {ROOTFS_S} s to make the minbase rootfs")
    if done.returncode != 0:
        partial.unlink(missing_ok=True)
        pytest.fail(f"mmdebstrap failed ({done.returncode}): {done.stderr[-1500:]}")
    partial.rename(tar)
    return tar


@contextmanager
def lab_dockerd() -> Iterator[docker.DockerClient]:
    """The swarm lab's node1 dockerd alone; afterwards everything it changed is undone."""
    node = lab_nodes(1)[0]
    if (pid := daemons.foreign_dockerd([node])) is not None:
        pytest.fail(f"a dockerd this test did not start is running (pid {pid})")
    if swarm_lab() is not None or STATE_DIR.exists() or DATA_DIR.exists():
        pytest.fail(f"the swarm lab (or its leftovers in {STATE_DIR}) is up: swarmtrace lab down")
    before = hoststate.record([STATE_DIR, DATA_DIR, *DOCKER_PATHS])
    problems: list[str] = []
    try:
        daemons.start(node)
        with closing(docker.DockerClient(base_url=node.socket, timeout=IMPORT_S)) as client:
            yield client
    finally:
        daemons.stop(node, problems)
        hoststate.remove_links(before, hoststate.DOCKER_LINKS, problems)
        hoststate.restore_firewall(before, problems)
        hoststate.restore_sysctls(before, problems)
        hoststate.remove_cgroups([node.cgroup_parent], problems)
        hoststate.remove_paths(before, problems)
    assert not problems, problems


def clean_clone(into: Path) -> Path:
    """A clone of this checkout's HEAD: only what is committed reaches the fresh machine."""
    src = into / "src"
    subprocess.run(["git", "clone", "-q", "--no-hardlinks", str(REPO), str(src)], check=True,
                   timeout=120)
    return src


def container_script() -> str:
    """sh: each step under its own deadline; a marker line per step with its rc and time."""
    lines = ["cd /src"]
    for name, limit, cmd in STEPS:
        lines.append(f"t0=$(date +%s); timeout {limit} {cmd}; rc=$?; "
                     f'echo "{MARK} {name}|$rc|$(( $(date +%s) - t0 ))"; '
                     f'[ "$rc" = 0 ] || exit "$rc"')
    return "\n".join(lines)


def run_fresh(client: docker.DockerClient, rootfs: Path, src: Path) -> str:
    t0 = time.monotonic()
    client.api.import_image_from_file(
        str(rootfs), repository=IMAGE[0], tag=IMAGE[1],
        changes=["ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"])
    assert time.monotonic() - t0 < IMPORT_S, f"docker import took more than {IMPORT_S} s"
    image = f"{IMAGE[0]}:{IMAGE[1]}"
    mounts = {p: {"bind": p, "mode": "ro"} for p in HOST_CONFIG if Path(p).exists()}
    mounts |= {"/sys": {"bind": "/sys", "mode": "ro"}, str(src): {"bind": "/src", "mode": "rw"}}
    container = client.containers.run(
        image, ["sh", "-c", container_script()], name=CONTAINER, detach=True,
        network_mode="host", cap_add=["SYS_ADMIN", "NET_ADMIN"], volumes=mounts,
        environment={k: os.environ[k] for k in PIP_ENV if k in os.environ})
    try:
        limit = sum(s[1] for s in STEPS) + 60
        try:
            container.wait(timeout=limit)
        except Exception as err:  # requests' ReadTimeout: the steps' own deadlines failed too
            raise AssertionError(f"the fresh container ran longer than {limit} s") from err
        return str(container.logs().decode(errors="replace"))
    finally:
        with suppress(docker.errors.DockerException):
            container.remove(force=True)
        with suppress(docker.errors.DockerException):
            client.images.remove(image, force=True)


def test_setup_then_replay_and_doctor_on_fresh_debian(tmp_path: Path) -> None:
    t0 = time.monotonic()
    rootfs = cached_rootfs()
    made = time.monotonic() - t0
    src = clean_clone(tmp_path)
    try:
        with lab_dockerd() as client:
            log = run_fresh(client, rootfs, src)
    finally:
        shutil.rmtree(src)  # with the venv and BPF objects the container built: ~1 GB
    done = {m[0]: (int(m[1]), int(m[2]))
            for m in re.findall(rf"^{MARK} ([^|]+)\|(\d+)\|(\d+)$", log, re.MULTILINE)}
    tail = log[-3000:]
    for name, limit, _cmd in STEPS:
        assert name in done, f"{name} did not run in the fresh container:\n{tail}"
        rc = done[name][0]
        assert rc != 124, f"{name} took more than {limit} s in the fresh container:\n{tail}"
        assert rc == 0, f"{name} failed ({rc}) in the fresh container:\n{tail}"
    assert len(re.findall(r"^#\d+ ", log, re.MULTILINE)) >= 3, tail  # three requests replayed
    assert "backend auto -> " in log, tail
    # Docker 20.10 grants no CAP_BPF or CAP_PERFMON: CAP_SYS_ADMIN stands in for both.
    assert re.search(r"^  privileges +yes ", log, re.MULTILINE), tail
    timings = ", ".join(f"{n} {t} s" for n, (_rc, t) in done.items())
    doctor = log[log.rindex(f"{MARK} replay"):log.rindex(f"{MARK} doctor")].split("\n", 1)[1]
    print(f"fresh Debian 12: rootfs {made:.0f} s (cached if ~0), {timings}, "
          f"total {time.monotonic() - t0:.0f} s; its doctor:\n{doctor}")
