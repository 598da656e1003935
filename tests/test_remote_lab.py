"""Agents on the native 2-node swarm lab: one agent per node, each hooked only into its own
node's netns (node2's dockerd runs in a netns of this kernel), its clock shifted by a known
offset; every cross-node join comes from the merged streams. DNS round robin (no IPVS on
this kernel) is checked against the answers, as tests/test_swarm_lab.py does."""

from __future__ import annotations

import io
import json
import os
import re
import signal
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from typing import IO

import docker
import numpy as np
import pytest
from ipvs_match import check_crossing
from swarm_fixture import dnsrr_spread, two_node_swarm, vote_on_every_node, vote_task_nodes

from tracer.enrich.docker_topology import DockerNode
from tracer.enrich.names import short_task
from tracer.events import Point
from tracer.lab import swarm
from tracer.lab.swarm.daemons import DOCKERD
from tracer.lab.swarm.layout import VETH
from tracer.probes.core import CoreSource
from tracer.probes.netns import NetnsScope
from tracer.remote.auth import new_token
from tracer.remote.swarm_nodes import swarm_agents
from tracer.source import Filter

pytestmark = [
    pytest.mark.docker,
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root: dockerd, netns, BPF"),
    pytest.mark.skipif(not DOCKERD.exists(), reason="docker.io is not installed (scripts/setup)"),
]

ROOT = Path(__file__).resolve().parents[1]
PORT = 4791
SHIFT_NS = 250_000_000  # node2's agent runs 250 ms ahead (its --clock-offset-ns test hook)
READY_S = 60.0
_RUNNING: list[_Proc] = []  # every _Proc not yet stopped


class _Proc:
    """A swarmtrace subprocess whose stderr is a file we can wait on; stopped after the test
    at the latest (a test that fails midway leaves none running)."""

    def __init__(self, argv: list[str], tmp: Path, name: str) -> None:
        self.err_path = tmp / f"{name}.err"
        self.out_path = tmp / f"{name}.out"
        self._err: IO[bytes] = self.err_path.open("wb")
        self._out: IO[bytes] = self.out_path.open("wb")
        self.proc = subprocess.Popen([sys.executable, "-m", "tracer", *argv],
                                     stdout=self._out, stderr=self._err)
        _RUNNING.append(self)

    def wait_for(self, text: str, timeout_s: float = READY_S, times: int = 1) -> None:
        """Until stderr says `text` for the `times`-th time (a reconnect repeats a line)."""
        deadline = time.monotonic() + timeout_s
        while self.stderr.count(text) < times:
            if self.proc.poll() is not None:
                pytest.fail(f"exited ({self.proc.returncode}) before {text!r}: {self.stderr}")
            if time.monotonic() > deadline:
                pytest.fail(f"no {text!r} within {timeout_s:.0f} s: {self.stderr}")
            time.sleep(0.1)

    @property
    def stderr(self) -> str:
        return self.err_path.read_text(errors="replace")

    def lines(self) -> list[dict[str, object]]:
        return [json.loads(x) for x in self.out_path.read_text().splitlines() if x.strip()]

    def stop(self) -> int:
        if self in _RUNNING:
            _RUNNING.remove(self)
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._err.close()
        self._out.close()
        return self.proc.returncode


@pytest.fixture(autouse=True)
def _none_left_running() -> Iterator[None]:
    yield
    while _RUNNING:
        _RUNNING[-1].stop()


@pytest.fixture(scope="module")
def lab() -> Iterator[swarm.SwarmLab]:
    with two_node_swarm() as up:
        yield up


@pytest.fixture(scope="module")
def token(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("token") / "token"
    new_token(path)
    return path


def _agent(lab: swarm.SwarmLab, index: int, token: Path, tmp: Path) -> _Proc:
    node = lab.nodes[index]
    argv = ["-v", "agent", "--docker", node.socket, "--token-file", str(token), "--agent-port",
            str(PORT), "--port", "80", "--port", "53"]
    if index == 1:
        argv += ["--clock-offset-ns", str(SHIFT_NS)]
    p = _Proc(argv, tmp, f"agent-{node.name}-{time.monotonic_ns()}")
    p.wait_for(f"agent for {node.name} listening on {node.addr}:{PORT}")
    return p


@pytest.fixture
def agents(lab: swarm.SwarmLab, token: Path, tmp_path: Path) -> Iterator[list[_Proc]]:
    procs = [_agent(lab, i, token, tmp_path) for i in range(2)]
    yield procs
    # Every agent stopped first: one left listening would fail every later test.
    codes = [(p.stop(), p) for p in procs]
    assert all(rc == 0 for rc, _ in codes), [(rc, p.stderr[-3000:]) for rc, p in codes if rc]


def _collector(lab: swarm.SwarmLab, token: Path, tmp: Path, *extra: str) -> _Proc:
    where = ",".join(f"{n.addr}:{PORT}" for n in lab.nodes)
    agents = list(extra) if "--swarm" in extra else ["--agents", where, *extra]
    p = _Proc(["trace", *agents, "--token-file", str(token), "--json"], tmp, "trace")
    p.wait_for("swarmtrace: tracing with the agents backend")
    return p


def _vni(lab: swarm.SwarmLab) -> str:
    """overlay1's VXLAN network identifier, as Docker gave it."""
    with closing(docker.DockerClient(base_url=lab.nodes[0].socket, timeout=30)) as client:
        return str(client.networks.get("overlay1").attrs["Options"][
            "com.docker.network.driver.overlay.vxlanid_list"])


def _dnsrr(reqs: list[dict[str, object]]) -> list[dict[str, object]]:
    return [q for q in reqs if q["mode"] == "dnsrr"]


def test_manager_node_list_gives_the_agents(lab: swarm.SwarmLab) -> None:
    got = swarm_agents(PORT, lab.nodes[0].socket)
    assert [(a.node, a.host, a.port) for a in got] == [(n.name, n.addr, PORT)
                                                       for n in lab.nodes]


def test_requests_join_across_agents_and_clocks_align(
        lab: swarm.SwarmLab, agents: list[_Proc], token: Path, tmp_path: Path) -> None:
    tasks = vote_task_nodes(lab)
    vni = _vni(lab)
    record = tmp_path / "cluster.swt"
    # The agents' addresses from the manager's node list; every node's events in one file.
    trace = _collector(lab, token, tmp_path, "--swarm", "--agent-port", str(PORT),
                       "-w", str(record))
    answers = dnsrr_spread(lab, least=12, each=3)  # 3 or more cross to node2
    assert all(a.ok for a in answers), [a.text for a in answers if not a.ok]
    time.sleep(4)  # requests end when idle for 3 s
    assert trace.stop() == 0, trace.stderr
    reqs = _dnsrr(trace.lines())
    assert len(reqs) == len(answers), trace.stderr
    crossed = 0
    for q in reqs:
        backend = q["backend"]
        assert isinstance(backend, dict) and q["status"] == "ok", q
        task, node = tasks[str(backend["addr"]).split(":")[0]]
        assert backend["name"] == f"{short_task(task)} on {node}", q
        vx = check_crossing(q, "node1", node)
        if vx is not None:
            crossed += 1
            assert vx["detail"].startswith(
                f"node1 -> node2, VNI {vni} (overlay1) (outer 192.168.199.1 -> "
                f"192.168.199.2:4789, VNI {vni}; seen leaving and arriving"), vx
    assert crossed >= 3, reqs
    replay = subprocess.run([sys.executable, "-m", "tracer", "replay", str(record), "--json"],
                            capture_output=True, text=True, check=True)
    replayed = _dnsrr([json.loads(x) for x in replay.stdout.splitlines()])
    assert [(q["client"], q["backend"], [(h["kind"], h.get("node"), h.get("detail"))
                                         for h in q["hops"]]) for q in replayed] == \
        [(q["client"], q["backend"], [(h["kind"], h.get("node"), h.get("detail"))
                                      for h in q["hops"]]) for q in reqs]  # type: ignore[union-attr]
    m = re.search(r"node2: clock ([+-][\d.]+) ms vs node1, \+- ([\d.]+) us \(VXLAN packets "
                  r"both ways", trace.stderr)
    assert m, trace.stderr
    est_ms, err_us = float(m.group(1)), float(m.group(2))
    print(f"node2 clock: {est_ms:+.3f} ms (injected {SHIFT_NS / 1e6:+.3f}), error bar "
          f"{err_us:.1f} us, off by {abs(est_ms * 1e3 - SHIFT_NS / 1e3):.1f} us")
    assert abs(est_ms * 1e6 - SHIFT_NS) <= err_us * 1e3 + 1_000
    assert err_us < 1000


@contextmanager
def _vxlan_blocked_at_node2(lab: swarm.SwarmLab, tmp: Path) -> Iterator[None]:
    """UDP 4789 dropped on node2's underlay device before its kernel sees it (native XDP on
    the lab's veth): what a firewall between two hosts does to the data path."""
    obj = tmp / "xdp_drop_vxlan.o"
    subprocess.run(["clang", "-O2", "-target", "bpf", "-I/usr/include/x86_64-linux-gnu", "-c",
                    str(Path(__file__).with_name("xdp_drop_vxlan.c")), "-o", str(obj)],
                   check=True)
    dev = ["ip", "-n", str(lab.nodes[1].netns), "link", "set", "dev", VETH[1]]
    subprocess.run([*dev, "xdpdrv", "obj", str(obj), "sec", "xdp"], check=True)
    try:
        yield
    finally:
        subprocess.run([*dev, "xdpdrv", "off"], check=True)


def test_blocked_data_path_is_sent_and_never_arrives(
        lab: swarm.SwarmLab, agents: list[_Proc], token: Path, tmp_path: Path) -> None:
    vote_on_every_node(lab)  # some requests must reach node1's task, some node2's
    tasks = vote_task_nodes(lab)
    trace = _collector(lab, token, tmp_path)
    with _vxlan_blocked_at_node2(lab, tmp_path):
        answers = dnsrr_spread(lab)
    assert any(not a.ok for a in answers) and any(a.ok for a in answers), answers
    time.sleep(4)
    assert trace.stop() == 0, trace.stderr
    lost = [q for q in _dnsrr(trace.lines())
            if tasks[str(q["entry"]).split(":")[0]][1] == "node2"]
    assert lost, trace.lines()
    for q in lost:
        assert q["status"] != "ok" and "missing" not in q, q
        vx = [h["detail"] for h in q["hops"] if h["kind"] == "vxlan"]  # type: ignore[union-attr]
        assert vx == ["sent over VXLAN from node1 (outer 192.168.199.1 -> 192.168.199.2:4789, "
                      f"VNI {vx[0].split('VNI ')[1].split(')')[0]}) and never seen arriving at "
                      "node2"], q


def test_a_client_without_the_token_gets_nothing(
        lab: swarm.SwarmLab, agents: list[_Proc], tmp_path: Path) -> None:
    bad = tmp_path / "bad"
    new_token(bad)
    where = ",".join(f"{n.addr}:{PORT}" for n in lab.nodes)
    p = _Proc(["trace", "--agents", where, "--token-file", str(bad), "--json", "--timeout",
               "3"], tmp_path, "bad")
    swarm.traffic("dnsrr", 2)
    assert p.proc.wait(timeout=60) == 0
    assert p.stop() == 0
    assert p.lines() == []
    assert "0 of 2 agents streaming" in p.stderr, p.stderr
    for a in agents:
        a.wait_for("refused collector", timeout_s=10)
        assert "wrong token" in a.stderr


def test_stopped_agent_is_named_missing_then_recovers(
        lab: swarm.SwarmLab, agents: list[_Proc], token: Path, tmp_path: Path) -> None:
    trace = _collector(lab, token, tmp_path)
    assert agents[1].stop() == 0
    trace.wait_for("node2: no agent, its hops are missing", timeout_s=15)
    sent = len(dnsrr_spread(lab, least=6))  # some cross to node2
    time.sleep(4)
    missing = _dnsrr(trace.lines())
    agents[1] = _agent(lab, 1, token, tmp_path)
    # The second time: the first was at the start. Traffic sent before the collector is back
    # with the new agent (it retries each second) is rightly missing node2's hops.
    trace.wait_for("node2: agent connected", timeout_s=15, times=2)
    done = len(trace.lines())
    sent_back = len(dnsrr_spread(lab, least=6))
    time.sleep(4)
    assert trace.stop() == 0, trace.stderr
    back = _dnsrr(trace.lines()[done:])
    assert len(missing) == sent and len(back) == sent_back, trace.stderr
    for q in missing:
        assert q["missing"] == ["node2: no agent, its hops are missing"], q
    lost = [h["detail"] for q in missing for h in q["hops"] if h["kind"] == "vxlan"]
    assert lost and all(d.startswith("sent over VXLAN from node1 (outer 192.168.199.1 -> "
                                     "192.168.199.2:4789") and
                        d.endswith("node2: no agent, its hops are missing") for d in lost)
    assert all("missing" not in q and q["status"] == "ok" for q in back), \
        [(q["status"], q.get("missing"), [(h["kind"], h.get("node"), h.get("detail"))
                                          for h in q["hops"]]) for q in back]  # type: ignore[union-attr]
    assert any("seen leaving and arriving" in h["detail"] for q in back for h in q["hops"]
               if h["kind"] == "vxlan"), back


def _vxlan_points(src: CoreSource, seconds: float) -> set[int]:
    """The VXLAN points among what the source reads for `seconds`."""
    seen: set[int] = set()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        arr = src.poll(0.1)
        seen |= set(np.unique(arr["point"]).tolist()) & {Point.VXLAN_OUT, Point.VXLAN_IN}
    return seen


def test_an_overlay_made_after_start_is_observed(lab: swarm.SwarmLab, tmp_path: Path) -> None:
    """A tracer (an agent) started on a node without overlays attaches the device tracepoints
    that read the VXLAN crossing once the first overlay sandbox appears in its netns
    directory: here node1's real overlay netns file, linked in after start, as dockerd adds
    it when the node's first overlay task starts."""
    node = DockerNode(lab.nodes[0].socket)
    try:
        assert node.netns_dir is not None and node.host_netns is not None
        overlay = next(node.netns_dir.glob("1-*"))
        scope = NetnsScope(node.host_netns, (tmp_path,))
    finally:
        node.close()
    with CoreSource(Filter(ports=(80,)), scope=scope) as src:
        assert src.stats().extra["device_tracepoints"] == 0
        assert all(a.ok for a in swarm.traffic("dnsrr", 4))
        assert _vxlan_points(src, 1.0) == set()  # not attached: the crossing goes unseen
        (tmp_path / overlay.name).symlink_to(overlay)
        deadline = time.monotonic() + 10
        while not src.stats().extra["device_tracepoints"]:
            assert time.monotonic() < deadline, "no device tracepoints 10 s after the overlay"
            src.poll(0.1)  # each poll rescans the netns twice a second
        assert all(a.ok for a in dnsrr_spread(lab))  # some cross to node2
        assert _vxlan_points(src, 2.0) == {Point.VXLAN_OUT, Point.VXLAN_IN}


def _dev_image(lab: swarm.SwarmLab) -> str:
    """A development image of this worktree (the shipped one comes from scripts/image): an
    empty root whose `swarmtrace` runs this worktree's venv, mounted from the node with /usr."""
    name = f"swarmtrace-dev:{os.getpid()}"
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for d in ("usr", "opt", "opt/st", "opt/st/bin", "tmp", "run", "proc", "sys", "dev",
                  "etc", "var", "work"):
            info = tarfile.TarInfo(d)
            info.type, info.mode = tarfile.DIRTYPE, 0o1777 if d == "tmp" else 0o755
            tar.addfile(info)
        for link, target in (("bin", "usr/bin"), ("lib", "usr/lib"), ("lib64", "usr/lib64"),
                             ("sbin", "usr/sbin"), ("var/run", "../run")):
            info = tarfile.TarInfo(link)
            info.type, info.linkname = tarfile.SYMTYPE, target
            tar.addfile(info)
        script = f'#!/bin/sh\nexec {sys.executable} -m tracer "$@"\n'.encode()
        info = tarfile.TarInfo("opt/st/bin/swarmtrace")
        info.size, info.mode = len(script), 0o755
        tar.addfile(info, io.BytesIO(script))
    repo, tag = name.split(":")
    with lab.open_clients() as clients:
        first, *others = clients.values()
        first.api.import_image_from_data(buf.getvalue(), repository=repo, tag=tag,
                                         changes=["ENV PATH=/opt/st/bin:/usr/bin:/bin",
                                                  f"ENV PYTHONPATH={ROOT}"])
        # One image with one ID on every node, as `docker load` of one archive gives: deploy
        # hands Swarm a local image by its ID.
        archive = b"".join(first.images.get(name).save())
        for c in others:
            c.images.load(archive)
    return name


def _service_state(lab: swarm.SwarmLab) -> str:
    """The agent service's tasks and logs, to say why it did not come up."""
    with lab.open_clients() as clients:
        try:
            svc = clients["node1"].services.get("swarmtrace-agent")
            tasks = [(t["Status"]["State"], t["Status"].get("Err", "")) for t in svc.tasks()]
            logs = b"".join(svc.logs(stdout=True, stderr=True, tail=20)).decode(errors="replace")
            return f"tasks {tasks}\n{logs}"
        except Exception as err:  # diagnostics only: the failure is reported either way
            return f"(no service state: {err})"


def _ours_in_kernel() -> set[str]:
    """Our BPF programs loaded now (their names start st_), as "id name"."""
    progs = subprocess.run(["bpftool", "prog", "list"], capture_output=True, text=True,
                           check=False).stdout
    found = (re.match(r"(\d+): .*\bname (st_\w+)", line) for line in progs.splitlines())
    return {f"{m.group(1)} {m.group(2)}" for m in found if m}


def test_deploy_puts_an_agent_on_every_node_and_undeploy_leaves_nothing(
        lab: swarm.SwarmLab, token: Path, tmp_path: Path) -> None:
    image = _dev_image(lab)
    others = _ours_in_kernel()  # another tracer on this machine (not the deployed agents)
    node1_sock = lab.nodes[1].exec_root.parent / "node1.sock"
    node1_sock.symlink_to("/var/run/docker.sock")  # so one template names both sockets
    state = str(lab.nodes[1].exec_root.parent)
    deploy = [sys.executable, "-m", "tracer", "deploy", "--image", image, "--token-file",
              str(token), "--agent-port", str(PORT), "--port", "80", "--port", "53",
              # The lab's daemons keep their sockets and netns apart; a real node has them at
              # Docker's defaults, which deploy uses unless told.
              "--docker-socket", f"{state}/{{{{.Node.Hostname}}}}.sock",
              "--netns-dir", f"{state}/{{{{.Node.Hostname}}}}/netns", "--netns-propagation", "",
              "--mount", "/usr:/usr", "--mount", f"{ROOT}:{ROOT}"]
    try:
        subprocess.run(deploy, check=True, capture_output=True, text=True, timeout=60)
        trace = _collector(lab, token, tmp_path)
        try:
            deadline = time.monotonic() + READY_S
            while "node2: agent connected" not in trace.stderr or \
                    "node1: agent connected" not in trace.stderr:
                if time.monotonic() > deadline:
                    pytest.fail(f"the deployed agents did not come up: {trace.stderr}\n"
                                f"{_service_state(lab)}")
                time.sleep(0.5)
            answers = dnsrr_spread(lab, least=8)  # some cross to node2
            assert all(a.ok for a in answers)
            time.sleep(4)
        finally:
            assert trace.stop() == 0, trace.stderr
        reqs = _dnsrr(trace.lines())
        assert len(reqs) == len(answers), trace.stderr
        both = [h for q in reqs for h in q["hops"]  # type: ignore[union-attr]
                if h["kind"] == "vxlan" and "seen leaving and arriving" in h["detail"]]
        assert both, reqs
    finally:
        undo = subprocess.run([sys.executable, "-m", "tracer", "undeploy"], capture_output=True,
                              text=True, timeout=120)
        node1_sock.unlink()
    assert undo.returncode == 0, undo.stderr
    assert "removed service swarmtrace-agent, secret swarmtrace-token" in undo.stderr
    with lab.open_clients() as clients:
        mgr = clients["node1"]
        assert not mgr.services.list(filters={"name": "swarmtrace-agent"})
        assert not mgr.secrets.list(filters={"name": "swarmtrace-token"})
        # Swarm deletes a task before its node has removed the container: give them time.
        deadline = time.monotonic() + 30
        left = ["?"]
        while left and time.monotonic() < deadline:
            left = [ct.name for c in clients.values() for ct in
                    c.containers.list(all=True, filters={"label": "io.swarmtrace.deploy"})]
            time.sleep(0.2)
        assert not left
    deadline = time.monotonic() + 10  # the kernel frees a program shortly after its last fd
    while _ours_in_kernel() - others and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _ours_in_kernel() - others == set()
