"""The native 2-node swarm lab as a module fixture's body: built once, removed after."""

from __future__ import annotations

import os
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

import docker
import pytest

from tracer import slowdown
from tracer.lab import swarm
from tracer.lab.swarm.daemons import DOCKERD, foreign_dockerd
from tracer.lab.swarm.layout import lab_nodes
from tracer.lab.swarm.services import (
    MODE_SERVICE,
    READY_TIMEOUT_S,
    Answer,
    client_container,
    request_from_client,
)

# What every test on the native swarm lab needs.
SWARM_LAB_MARKS = [
    pytest.mark.docker,
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root: dockerd, netns, iptables"),
    pytest.mark.skipif(not DOCKERD.exists(), reason="docker.io is not installed (scripts/setup)"),
]


@contextmanager
def two_node_swarm() -> Iterator[swarm.SwarmLab]:
    """The lab up for the block, down after it (on failure too); skips when a dockerd or lab
    it did not start is in the way, rather than tearing down somebody else's."""
    if (pid := foreign_dockerd(lab_nodes(2))) is not None:
        pytest.skip(f"a dockerd the lab did not start is running (pid {pid})")
    if swarm.load() is not None:
        pytest.skip("a swarm lab is already up: `swarmtrace swarmlab down` first")
    lab = swarm.up(nodes=2)
    try:
        yield lab
    finally:
        swarm.down()


def vote_tasks(clients: dict[str, docker.DockerClient]) -> dict[str, tuple[str, str, str]]:
    """vote task ip -> (task name, container id[:12], node) from `docker inspect` via the SDK."""
    out = {}
    for node, c in clients.items():
        for ct in c.containers.list(filters={"label": "com.docker.swarm.service.name=vote"}):
            ip = ct.attrs["NetworkSettings"]["Networks"]["overlay1"]["IPAddress"]
            out[ip] = (ct.labels["com.docker.swarm.task.name"], ct.id[:12], node)
    return out


def vote_task_nodes(lab: swarm.SwarmLab) -> dict[str, tuple[str, str]]:
    """vote task ip -> (task name, node), from the daemons themselves."""
    with lab.open_clients() as clients:
        return {ip: (task, node) for ip, (task, _, node) in vote_tasks(clients).items()}


def dnsrr_spread(lab: swarm.SwarmLab, least: int = 4, each: int = 1,
                 most: int = 48) -> list[Answer]:
    """DNS round-robin requests from the client task to vote: at least `least`, and on until
    two outcomes were each seen `each` times: both vote tasks' answers, or one task's answers
    and failures (the path to the other one cut). Docker's DNS shuffles the task addresses in
    every answer, so a fixed number of requests can all go to one task: 4 do, 1 time in 8."""
    with lab.open_clients() as clients:
        container = client_container(clients)
        answers: list[Answer] = []
        while True:
            answers.append(request_from_client(container, MODE_SERVICE["dnsrr"]))
            seen = Counter(a.container if a.ok else "failed" for a in answers)
            if len(answers) >= least and sum(n >= each for n in seen.values()) >= 2:
                return answers
            if len(answers) >= most:
                raise AssertionError(f"{most} DNS round-robin requests did not spread over two "
                                     f"outcomes {each} times each: {dict(seen)}")


def vote_on_every_node(lab: swarm.SwarmLab) -> None:
    """Wait until every node runs a vote task, as the lab places them (one per node): a test
    of traffic between the nodes needs both, also right after an earlier test's fault. Fails
    naming the node without one."""
    limit = slowdown.scaled(READY_TIMEOUT_S)
    deadline = time.monotonic() + limit
    with lab.open_clients() as clients:
        while True:
            running = {node for _, _, node in vote_tasks(clients).values()}
            missing = [n.name for n in lab.nodes if n.name not in running]
            if not missing:
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"no vote task running on {', '.join(missing)} after "
                                     f"{limit:.0f} s{slowdown.note()}")
            time.sleep(0.5)
