"""The container image (scripts/image) run the documented way in the native swarm lab's dockerd.

The image is built once per set of inputs (cached in /var/cache/swarmtrace), loaded into the
lab's node1 daemon, and run with the least-privilege flags of the README's Install section.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import docker
import pytest
from image_build import build_image
from swarm_fixture import dnsrr_spread, two_node_swarm, vote_task_nodes

from tracer import __version__
from tracer.container_run import CAPABILITIES, docker_run_flags
from tracer.lab import swarm
from tracer.lab.swarm.daemons import DOCKERD

pytestmark = [
    pytest.mark.docker,
    pytest.mark.root,
    pytest.mark.image,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root: mmdebstrap, dockerd, netns"),
    pytest.mark.skipif(not DOCKERD.exists(), reason="docker.io is not installed (scripts/setup)"),
]

ROOT = Path(__file__).resolve().parents[1]
LEAN, FULL = f"swarmtrace:{__version__}-lean", f"swarmtrace:{__version__}"


@pytest.fixture(scope="module")
def archives() -> dict[str, Path]:
    """Both variants, built (or taken from the cache) before any lab exists."""
    return {LEAN: build_image("--lean"), FULL: build_image()}


@pytest.fixture(scope="module")
def lab(archives: dict[str, Path]) -> Iterator[swarm.SwarmLab]:
    with two_node_swarm() as lab:
        with closing(docker.DockerClient(base_url=lab.nodes[0].socket, timeout=120)) as client:
            for tag, path in archives.items():
                with path.open("rb") as f:
                    loaded = client.images.load(f)
                assert tag in {t for image in loaded for t in image.tags}
        yield lab


def _docker(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    # /usr/bin/docker: another docker CLI may come first on PATH; node1 is the default socket.
    return subprocess.run(["/usr/bin/docker", *args], capture_output=True, text=True,
                          check=False, timeout=timeout)


def _trace_flags(lab: swarm.SwarmLab, caps: tuple[str, ...] = CAPABILITIES) -> list[str]:
    """The README's one-liner for node1: host network, its Docker socket, its sandboxes."""
    node = lab.nodes[0]
    return docker_run_flags(node.socket, str(node.exec_root / "netns"), caps)


def test_image_traces_the_swarm_with_least_privilege(lab: swarm.SwarmLab) -> None:
    """`trace --service vote` in the lean image: DNS round-robin requests from the client task
    on node1, with the vote task and node each went to, named by Docker."""
    name = f"swarmtrace-image-test-{os.getpid()}"
    proc = subprocess.Popen(
        ["/usr/bin/docker", "run", "--rm", "--name", name, *_trace_flags(lab), LEAN,
         "trace", "--service", "vote", "--json", "--timeout", "120"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    try:
        notes = []
        for line in proc.stderr:
            notes.append(line)
            if line.startswith("swarmtrace: tracing with"):
                break
        assert any(n.startswith("swarmtrace: service vote: ports 53, addresses ")
                   for n in notes), notes
        sent = len(dnsrr_spread(lab))  # some to each node's task
        time.sleep(1)  # the last reply's events are read at the next ring poll (<= 0.1 s)
    finally:
        _docker("kill", "--signal", "INT", name)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    reqs = [json.loads(line) for line in out.splitlines()]
    vote = [q for q in reqs if q["mode"] == "dnsrr"]
    assert len(vote) == sent, reqs
    tasks = vote_task_nodes(lab)
    for q in vote:
        assert (q["service"], q["status"]) == ("vote", "ok")
        assert _same_task(q["client_name"], _client_task(lab))
        task, node = tasks[q["backend"]["addr"].split(":")[0]]
        # The backend is named "<task> on <node>", from node1's Docker API alone.
        shown_task, _, shown_node = q["backend"]["name"].partition(" on ")
        assert _same_task(shown_task, task) and shown_node == node, (q["backend"], task, node)
        picked = [h["detail"] for h in q["hops"] if h["kind"] == "dns"]
        assert picked and picked[0].startswith("vote -> "), q["hops"]
    assert {tasks[q["backend"]["addr"].split(":")[0]][1] for q in vote} == {"node1", "node2"}


def _same_task(shown: str, task: str) -> bool:
    """swarmtrace shows a task as service.slot.<first 4 of its id> (`vote.1.omna`)."""
    return shown.count(".") == 2 and task.startswith(shown)


def _client_task(lab: swarm.SwarmLab) -> str:
    with closing(docker.DockerClient(base_url=lab.nodes[0].socket, timeout=30)) as client:
        ct = client.containers.list(filters={"label": "com.docker.swarm.service.name=client"})
        return str(ct[0].labels["com.docker.swarm.task.name"])


def test_without_sys_admin_trace_says_so_in_one_line(lab: swarm.SwarmLab) -> None:
    """Docker 20.10's seccomp profile allows bpf() and setns() only with CAP_SYS_ADMIN."""
    res = _docker("run", "--rm", *_trace_flags(lab, ("NET_ADMIN",)), LEAN, "trace",
                  "--timeout", "3")
    assert res.returncode == 3, res.stderr
    assert len(res.stderr.strip().splitlines()) == 1, res.stderr
    assert "--cap-add SYS_ADMIN" in res.stderr, res.stderr  # the fix, in Docker's own words


def test_net_admin_reads_the_mark_rules(lab: swarm.SwarmLab) -> None:
    """The service behind a mark comes from each sandbox's mangle table: iptables-save, which
    needs CAP_NET_ADMIN; without it swarmtrace traces on and leaves marks unnamed."""
    for caps, ok in ((CAPABILITIES, True), (("SYS_ADMIN",), False)):
        res = _docker("run", "--rm", *_trace_flags(lab, caps), "--entrypoint", "iptables-save",
                      LEAN, "-t", "mangle")
        assert (res.returncode == 0 and "*mangle" in res.stdout) == ok, (caps, res.stderr)


def test_replay_and_export_need_no_privileges(lab: swarm.SwarmLab, tmp_path: Path) -> None:
    """A trace file mounted at /data: replay and export with no capability, no network and a
    read-only root, and the same requests as the host's own replay."""
    shutil.copy(ROOT / "tracer" / "data" / "sample.swt", tmp_path / "mesh.swt")
    tmp_path.chmod(0o777)
    jail = ["run", "--rm", "--cap-drop", "ALL", "--network", "none", "--read-only",
            "-v", f"{tmp_path}:/data"]
    replay = _docker(*jail, LEAN, "replay", "mesh.swt", "--json")
    assert replay.returncode == 0, replay.stderr
    host = subprocess.run([str(ROOT / ".venv" / "bin" / "swarmtrace"), "replay",
                           str(tmp_path / "mesh.swt"), "--json"], capture_output=True, text=True,
                          check=True)
    assert replay.stdout == host.stdout and replay.stdout.count("\n") > 10
    export = _docker(*jail, LEAN, "export", "mesh.swt", "--pcapng", "mesh.pcapng")
    assert export.returncode == 0, export.stderr
    assert (tmp_path / "mesh.pcapng").read_bytes()[:4] == b"\x0a\x0d\x0d\x0a"


def test_full_image_carries_bcc(lab: swarm.SwarmLab) -> None:
    """The full image imports Debian's BCC; on a kernel without kprobes it says so in one line."""
    res = _docker("run", "--rm", "--network", "none", "--entrypoint", "python3", FULL,
                  "-c", "import bcc; print(bcc.__file__)")
    assert res.returncode == 0 and "dist-packages/bcc" in res.stdout, res.stderr
    lean = _docker("run", "--rm", "--network", "none", "--entrypoint", "python3", LEAN,
                   "-c", "import bcc")
    assert lean.returncode != 0
