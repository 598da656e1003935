"""The lab's iptables rules and sysctls, as Docker sets them on a Swarm node and in its tasks."""

from __future__ import annotations

import re

from tracer.lab import namespaces
from tracer.lab.balancer import BALANCERS, MESH_LB, VIP_LB, stand_in_rules
from tracer.lab.topology import (
    BACKENDS,
    FORWARDING,
    HOST,
    PUBLISHED_PORT,
    SBOX,
    SBOX_GW_ADDR,
    SBOX_INGRESS_ADDR,
    TASK_PORT,
    VIP,
    VIP_CLIENT,
)


def tables(stand_in: bool) -> dict[str, dict[str, list[str]]]:
    """netns -> table -> rules (iptables-restore syntax); `stand_in` adds the LB DNAT rules."""
    lb_nat = {lb.netns: stand_in_rules(lb) if stand_in else [] for lb in BALANCERS}
    result: dict[str, dict[str, list[str]]] = {
        HOST: {
            "nat": [
                ":DOCKER-INGRESS - [0:0]",
                "-A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER-INGRESS",
                "-A OUTPUT -m addrtype --dst-type LOCAL -j DOCKER-INGRESS",
                f"-A DOCKER-INGRESS -p tcp -m tcp --dport {PUBLISHED_PORT}"
                f" -j DNAT --to-destination {SBOX_GW_ADDR}:{PUBLISHED_PORT}",
                "-A DOCKER-INGRESS -j RETURN",
            ]
        },
        SBOX: {
            "mangle": [
                f"-A PREROUTING -p tcp -m tcp --dport {PUBLISHED_PORT}"
                f" -j MARK --set-mark {MESH_LB.fwmark:#x}",
            ],
            "nat": [
                *lb_nat[SBOX],
                # Like Docker: tasks answer the sandbox, which un-NATs the reply to the client.
                f"-A POSTROUTING -o eth0 -m mark --mark {MESH_LB.fwmark:#x}"
                f" -j SNAT --to-source {SBOX_INGRESS_ADDR}",
            ],
        },
        VIP_CLIENT: {
            "mangle": [f"-A OUTPUT -d {VIP}/32 -j MARK --set-mark {VIP_LB.fwmark:#x}"],
            "nat": lb_nat[VIP_CLIENT],
        },
    }
    for backend in BACKENDS:
        result[backend] = {
            "nat": [
                f"-A PREROUTING -p tcp -m tcp --dport {PUBLISHED_PORT}"
                f" -j REDIRECT --to-ports {TASK_PORT}"
            ]
        }
    return result


def restore_input(by_table: dict[str, list[str]]) -> str:
    lines = []
    for table, rules in by_table.items():
        if rules:
            lines += [f"*{table}", *rules, "COMMIT"]
    return "\n".join(lines) + "\n"


def sysctls(ipvs: bool) -> dict[str, list[str]]:
    """netns -> sysctl assignments. br_netfilter sysctls keep the kernel default on purpose."""
    result: dict[str, list[str]] = {name: ["net.ipv4.ip_forward=1"] for name in FORWARDING}
    if ipvs:
        # IPVS connections get conntrack entries, so the nat POSTROUTING SNAT applies to them.
        for lb in BALANCERS:
            result.setdefault(lb.netns, []).append("net.ipv4.vs.conntrack=1")
    return result


def install(stand_in: bool, ipvs: bool) -> None:
    for name, assignments in sysctls(ipvs).items():
        namespaces.run(name, ["sysctl", "-q", "-w", *assignments])
    for name, by_table in tables(stand_in).items():
        namespaces.run(name, ["iptables-restore", "--noflush"], stdin=restore_input(by_table))


_COUNTED = re.compile(r"^\[(\d+):\d+\] (-A .*)$")


def rule_packets(netns: str, table: str) -> dict[str, int]:
    """Packet counter of each rule in `table` of `netns`, keyed by its `-A ...` text."""
    out = namespaces.run(netns, ["iptables-save", "-c", "-t", table])
    counts = {}
    for line in out.splitlines():
        if m := _COUNTED.match(line):
            counts[m.group(2)] = int(m.group(1))
    return counts
