"""The netns lab's intent: its own design (tracer/lab/topology.py), as Docker would hold it."""

from __future__ import annotations

from tracer.diagnose.intent import Balancer, Intent, NodeIntent, Published, Sandbox, Served
from tracer.lab.balancer import MESH_LB, VIP_LB
from tracer.lab.netns_lab import LabInfo
from tracer.lab.topology import (
    BACKENDS,
    FORWARDING,
    HOST,
    NETNS_DIR,
    PUBLISHED_PORT,
    SBOX,
    SBOX_GW_ADDR,
    TASK_PORT,
    VIP,
    VIP_CLIENT,
    short_name,
)

NODE = "lab"
# Each backend's address on the ingress network (mesh) and on overlay1 (VIP).
TASK_ADDRS = {b: (MESH_LB.backends[i], VIP_LB.backends[i]) for i, b in enumerate(BACKENDS)}
SERVICE = "backend"  # the one service both lab backends are tasks of


def lab_intent(info: LabInfo) -> Intent:
    ipvs = info.lb == "ipvs"

    def box(ns: str, kind: str, balancers: tuple[Balancer, ...] = ()) -> Sandbox:
        sysctls = [("net.ipv4.ip_forward", "1")] if ns in FORWARDING else []
        if ipvs and balancers:
            sysctls.append(("net.ipv4.vs.conntrack", "1"))
        serves = tuple(Served(SERVICE, "tcp", TASK_PORT, a) for a in TASK_ADDRS.get(ns, ()))
        return Sandbox(NODE, short_name(ns), kind, NETNS_DIR / ns,  # type: ignore[arg-type]
                       tuple(sysctls), balancers, serves)

    mesh = Balancer(MESH_LB.fwmark, SERVICE, frozenset(MESH_LB.backends))
    vip = Balancer(VIP_LB.fwmark, SERVICE, frozenset(VIP_LB.backends))
    sandboxes = (
        box(HOST, "host"),
        box(SBOX, "ingress", (mesh,)),
        box(VIP_CLIENT, "lb", (vip,)),
        *(box(b, "task") for b in BACKENDS),
    )
    addrs = {VIP: SERVICE, **{a: SERVICE for a in (*MESH_LB.backends, *VIP_LB.backends)}}
    node = NodeIntent(NODE, None, NETNS_DIR / HOST, sandboxes,
                      (Published(SERVICE, "tcp", PUBLISHED_PORT, SBOX_GW_ADDR),),
                      service_addrs=addrs)
    notes = () if ipvs else (
        "netns lab: this kernel has no IPVS; its balancers are the iptables stand-in, "
        "IPVS tables not checked",)
    return Intent("netns lab", ipvs, (node,), "swarmtrace lab down && swarmtrace lab up", notes)
