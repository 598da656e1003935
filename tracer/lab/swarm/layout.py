"""Where the swarm lab puts things: node addresses, sockets, daemon directories."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

STATE_DIR = Path("/run/swarmtrace-swarm")  # sockets, exec roots, pid files, state.json
DATA_DIR = Path("/var/lib/swarmtrace-swarm")  # daemon data roots (images, swarm raft)
STATE_FILE = STATE_DIR / "state.json"

SUBNET_PREFIX = "192.168.199"  # node N is 192.168.199.N on the lab veth
VETH = ("stlab-n1", "stlab-n2")  # node1 end (root netns), node2 end (in its netns)
NODE1_SOCKET = "unix:///var/run/docker.sock"  # the default: plain `docker` talks to node1
MAX_NODES = 2  # one veth pair links the nodes


@dataclass(frozen=True)
class LabNode:
    """One swarm node = one dockerd. node1 runs in the root netns, the others in netns."""

    name: str  # also the daemon's hostname, hence the swarm node name
    addr: str
    netns: str | None  # `ip netns` name, None for the root netns
    socket: str  # docker SDK base_url

    @property
    def exec_root(self) -> Path:
        return STATE_DIR / self.name

    @property
    def data_root(self) -> Path:
        return DATA_DIR / self.name

    @property
    def pidfile(self) -> Path:
        return STATE_DIR / f"{self.name}.pid"

    @property
    def logfile(self) -> Path:
        return STATE_DIR / f"{self.name}.log"

    @property
    def cgroup_parent(self) -> str:
        return f"/stlab-{self.name}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def lab_nodes(count: int) -> list[LabNode]:
    nodes = [LabNode("node1", f"{SUBNET_PREFIX}.1", None, NODE1_SOCKET)]
    for i in range(2, count + 1):
        name = f"node{i}"
        nodes.append(LabNode(name, f"{SUBNET_PREFIX}.{i}", f"stlab-{name}",
                             f"unix://{STATE_DIR}/{name}.sock"))
    return nodes
