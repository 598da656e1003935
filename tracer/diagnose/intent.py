"""What the orchestrator intends: services, their tasks and addresses, the sandboxes of each
node and what each sandbox must hold. Built from Docker's API (docker_intent.py) or from the
netns lab's own design (lab_intent.py); state_check.py holds the kernel against it."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

SandboxKind = Literal["host", "ingress", "lb", "task", "overlay"]


@dataclass(frozen=True)
class Balancer:
    """An IPVS fwmark service a sandbox must hold, and the MARK rule that feeds it."""

    fwmark: int
    service: str
    dests: frozenset[str]  # running task addresses on the balancer's network


@dataclass(frozen=True)
class Sandbox:
    node: str
    name: str  # "host", "ingress_sbox", "lb_overlay1", "1-overlay1", a task name
    kind: SandboxKind
    path: Path  # its netns file
    sysctls: tuple[tuple[str, str], ...] = ()  # (key, value) the orchestrator set here
    balancers: tuple[Balancer, ...] = ()
    serves: tuple[Served, ...] = ()  # a task's ports that the service's traffic targets


@dataclass(frozen=True)
class Served:
    """A port a task must listen on and let in: the target of the service's traffic."""

    service: str
    proto: str
    port: int
    addr: str  # the task's address the traffic arrives at


@dataclass(frozen=True)
class Published:
    """A routing-mesh port: the node DNATs it to its ingress sandbox."""

    service: str
    proto: str
    port: int
    dnat_to: str  # the ingress sandbox's docker_gwbridge address


@dataclass(frozen=True)
class Overlay:
    """An overlay network's netns on one node and the remote endpoints it must reach."""

    network: str
    path: Path
    remote: dict[str, str]  # remote endpoint ip -> the node address (VTEP) it lives behind


@dataclass(frozen=True)
class DnsProbe:
    """Ask Docker DNS from inside a task's netns: `name` must resolve to `expected`."""

    node: str
    sandbox: str  # the task whose netns asks
    path: Path
    name: str
    service: str
    expected: frozenset[str]


@dataclass(frozen=True)
class NodeIntent:
    name: str
    addr: str | None  # the node's underlay address (swarm data path)
    host: Path  # the node's own netns
    sandboxes: tuple[Sandbox, ...] = ()
    published: tuple[Published, ...] = ()
    overlays: tuple[Overlay, ...] = ()
    dns: tuple[DnsProbe, ...] = ()
    service_addrs: dict[str, str] = field(default_factory=dict)  # VIP/task ip -> service


@dataclass(frozen=True)
class Intent:
    source: str  # "docker" or "netns lab": who intends this
    ipvs: bool  # whether this kernel has IPVS (without it Docker installs no balancers)
    nodes: tuple[NodeIntent, ...]
    rebuild: str  # the command that makes the orchestrator program a service again
    notes: tuple[str, ...] = ()  # what could not be checked, one line each
