"""The load balancers: a real IPVS fwmark service where the kernel has IPVS, else a stand-in.

Swarm's load balancer is an IPVS fwmark service (mangle MARK -> IPVS FWM <mark> rr -> tasks,
masquerading). Kernels without IPVS get iptables nat DNAT rules with `statistic --mode nth`,
which round-robin per connection because the nat table sees only a connection's first packet.
"""

from __future__ import annotations

import logging
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from tracer.errors import LabError
from tracer.lab.topology import PUBLISHED_PORT, SBOX, TASK_PORT, VIP_CLIENT

log = logging.getLogger(__name__)

STAND_IN_NOTE = "IPVS stand-in: iptables round-robin DNAT (this kernel has no IPVS)"
IPVS_NOTE = "load balancer: real IPVS fwmark services (rr, masquerading)"


@dataclass(frozen=True)
class Balancer:
    netns: str
    fwmark: int
    chain: str  # nat chain of the stand-in: PREROUTING for forwarded, OUTPUT for local traffic
    backends: tuple[str, ...]
    port: int  # destination port the backends receive
    ipvs_port: int  # real-server port in IPVS: 0 keeps the client's port, as Docker's ingress does


MESH_LB = Balancer(SBOX, 0x105, "PREROUTING", ("10.255.0.5", "10.255.0.6"), PUBLISHED_PORT, 0)
VIP_LB = Balancer(VIP_CLIENT, 0x103, "OUTPUT", ("10.0.0.10", "10.0.0.11"), TASK_PORT, TASK_PORT)
BALANCERS = (MESH_LB, VIP_LB)


IPVS_MODULES = ("ip_vs", "ip_vs_rr")


def has_ipvs() -> bool:
    """True when the kernel has IPVS: built in, loaded, or as a module modprobe can load."""
    if Path("/proc/net/ip_vs").exists():
        return True
    if not shutil.which("modprobe"):
        return False
    dry_run = subprocess.run(["modprobe", "-n", "-q", "ip_vs"], capture_output=True, check=False)
    return dry_run.returncode == 0


def load_ipvs() -> list[str]:
    """Load the IPVS modules that are not loaded yet; returns them, for unload_ipvs()."""
    loaded = []
    for module in IPVS_MODULES:
        if Path(f"/sys/module/{module}").exists():
            continue
        proc = subprocess.run(["modprobe", module], capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise LabError(f"modprobe {module} failed: {proc.stderr.strip()}")
        loaded.append(module)
    return loaded


def unload_ipvs(modules: list[str]) -> None:
    """Unload what load_ipvs() loaded; the lab's netns release them asynchronously, so retry."""
    for module in reversed(modules):
        deadline = time.monotonic() + 5.0
        while Path(f"/sys/module/{module}").exists():
            if subprocess.run(["modprobe", "-r", module], capture_output=True).returncode == 0:
                break
            if time.monotonic() > deadline:
                log.warning("could not unload %s (still in use)", module)
                break
            time.sleep(0.1)


def stand_in_rules(lb: Balancer) -> list[str]:
    """nat rules (iptables-restore syntax) that spread new connections round-robin."""
    rules = []
    last = len(lb.backends) - 1
    for i, backend in enumerate(lb.backends):
        # Rule i takes every (n-i)th of the connections the earlier rules left: an even split.
        nth = "" if i == last else f" -m statistic --mode nth --every {last + 1 - i} --packet 0"
        rules.append(
            f"-A {lb.chain} -p tcp -m mark --mark {lb.fwmark:#x}{nth}"
            ' -m comment --comment "IPVS stand-in"'
            f" -j DNAT --to-destination {backend}:{lb.port}"
        )
    return rules


def install_ipvs(lb: Balancer) -> None:
    """FWM <mark> rr service with masquerading real servers, in the balancer's netns."""
    # Imported here: only kernels with IPVS have the generic netlink family to bind to.
    from pyroute2 import IPVS, IPVSDest, IPVSService

    service = IPVSService(
        af=socket.AF_INET,
        protocol=socket.IPPROTO_TCP,
        fwmark=lb.fwmark,
        sched_name="rr",
        netmask="255.255.255.255",
    )
    with IPVS(netns=lb.netns, flags=0) as ipvs:
        ipvs.service("add", service=service)
        for backend in lb.backends:
            # fwd_method 0 = IP_VS_CONN_F_MASQ (NAT), what Swarm uses.
            dest = IPVSDest(addr=backend, port=lb.ipvs_port, fwd_method=0, weight=1)
            ipvs.dest("add", service=service, dest=dest)
    log.debug("IPVS FWM %d rr -> %s in %s", lb.fwmark, lb.backends, lb.netns)
