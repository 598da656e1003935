"""The native 2-node swarm lab as a module fixture's body: built once, removed after."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import docker
import pytest

from tracer.lab import swarm
from tracer.lab.swarm.daemons import DOCKERD, foreign_dockerd
from tracer.lab.swarm.layout import lab_nodes

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
