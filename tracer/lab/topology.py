"""The lab's shape as data: netns, bridges, veths, addresses and routes, like a Swarm node.

The names and addresses are part of the design: the tracer's enrichment strips LAB_PREFIX
and shows "host", "ingress_sbox", "backend-1", as Docker would name them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

LAB_PREFIX = "stlab-"
NETNS_DIR = Path("/var/run/netns")
# Server pid files and the "lab is complete" marker; tmpfs, so a reboot forgets a lab it lost.
RUN_DIR = Path("/run/swarmtrace-lab")

CLIENT = f"{LAB_PREFIX}client"
HOST = f"{LAB_PREFIX}host"
SBOX = f"{LAB_PREFIX}ingress_sbox"
INGRESS = f"{LAB_PREFIX}ingress"
BACKENDS = (f"{LAB_PREFIX}backend-1", f"{LAB_PREFIX}backend-2")
OVERLAY = f"{LAB_PREFIX}overlay1"
VIP_CLIENT = f"{LAB_PREFIX}vip-client"

PUBLISHED_PORT = 8080  # the service's published port on the node (routing mesh)
TASK_PORT = 80  # where each task's server listens; Docker REDIRECTs 8080 to it inside tasks
NODE_ADDR = "192.168.100.1"
CLIENT_ADDR = "192.168.100.2"
SBOX_GW_ADDR = "172.18.0.2"
SBOX_INGRESS_ADDR = "10.255.0.2"
VIP = "10.0.0.9"

MESH_TARGET = f"{NODE_ADDR}:{PUBLISHED_PORT}"
VIP_TARGET = f"{VIP}:{TASK_PORT}"


def short_name(netns: str) -> str:
    """The name a user sees: the netns name without the lab prefix."""
    return netns.removeprefix(LAB_PREFIX)


@dataclass(frozen=True)
class Namespace:
    name: str
    role: str  # one line for `swarmtrace lab up`: what this netns stands for


@dataclass(frozen=True)
class Bridge:
    netns: str
    name: str
    address: str | None = None  # "ip/prefix"


@dataclass(frozen=True)
class Port:
    """One end of a veth pair: its netns, name, address and the bridge it is enslaved to."""

    netns: str
    ifname: str
    address: str | None = None
    master: str | None = None


@dataclass(frozen=True)
class Veth:
    a: Port
    b: Port


@dataclass(frozen=True)
class Route:
    netns: str
    gateway: str  # default route


# Built in this order; removed all at once by deleting the netns.
NAMESPACES = (
    Namespace(CLIENT, f"client {CLIENT_ADDR}, default via {NODE_ADDR}"),
    Namespace(
        HOST,
        f"swarm node {NODE_ADDR}, docker_gwbridge 172.18.0.1/16, "
        f"DOCKER-INGRESS DNAT tcp dpt:{PUBLISHED_PORT} to:{SBOX_GW_ADDR}:{PUBLISHED_PORT}",
    ),
    Namespace(
        SBOX,
        f"ingress sandbox eth1 {SBOX_GW_ADDR}, eth0 {SBOX_INGRESS_ADDR}, mark 0x105, "
        f"fwmark 261 -> 10.255.0.5/10.255.0.6:{PUBLISHED_PORT}, SNAT {SBOX_INGRESS_ADDR}",
    ),
    Namespace(INGRESS, "ingress network namespace, bridge br0"),
    Namespace(
        BACKENDS[0],
        f"task 10.255.0.5 (ingress), 10.0.0.10 (overlay1), "
        f"REDIRECT {PUBLISHED_PORT} -> {TASK_PORT}",
    ),
    Namespace(
        BACKENDS[1],
        f"task 10.255.0.6 (ingress), 10.0.0.11 (overlay1), "
        f"REDIRECT {PUBLISHED_PORT} -> {TASK_PORT}",
    ),
    Namespace(OVERLAY, "overlay network namespace, bridge br0"),
    Namespace(
        VIP_CLIENT,
        f"VIP client 10.0.0.3, mark 0x103 for {VIP}, fwmark 259 -> 10.0.0.10/10.0.0.11:{TASK_PORT}",
    ),
)

BRIDGES = (
    Bridge(HOST, "docker_gwbridge", "172.18.0.1/16"),
    Bridge(INGRESS, "br0"),
    Bridge(OVERLAY, "br0"),
)

VETHS = (
    Veth(Port(CLIENT, "eth0", f"{CLIENT_ADDR}/24"), Port(HOST, "eth0", f"{NODE_ADDR}/24")),
    Veth(
        Port(SBOX, "eth1", f"{SBOX_GW_ADDR}/16"),
        Port(HOST, "veth-sbox", master="docker_gwbridge"),
    ),
    Veth(Port(SBOX, "eth0", f"{SBOX_INGRESS_ADDR}/16"), Port(INGRESS, "veth-sbox", master="br0")),
    Veth(Port(BACKENDS[0], "eth0", "10.255.0.5/16"), Port(INGRESS, "veth-backend-1", master="br0")),
    Veth(Port(BACKENDS[1], "eth0", "10.255.0.6/16"), Port(INGRESS, "veth-backend-2", master="br0")),
    Veth(Port(VIP_CLIENT, "eth0", "10.0.0.3/24"), Port(OVERLAY, "veth-client", master="br0")),
    Veth(Port(BACKENDS[0], "eth1", "10.0.0.10/24"), Port(OVERLAY, "veth-backend-1", master="br0")),
    Veth(Port(BACKENDS[1], "eth1", "10.0.0.11/24"), Port(OVERLAY, "veth-backend-2", master="br0")),
)

ROUTES = (Route(CLIENT, NODE_ADDR), Route(SBOX, "172.18.0.1"))

# Routers forward; the rest only bridge or terminate connections.
FORWARDING = (HOST, SBOX)
