"""`swarmtrace check`: what the orchestrator intends (intent.py) held against what the kernel
has, sandbox by sandbox. Read-only. Each mismatch is one Finding: where, what was expected,
what the kernel has, the command that repairs it and the moby issue it matches."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tracer.diagnose import filter_path, kernel_state
from tracer.diagnose import intent as plan
from tracer.diagnose.conntrack import FULL, TOO_SMALL
from tracer.enrich.ipvs import IpvsService, read_ipvs
from tracer.enrich.mangle import parse_mark_rules

VXLAN_PORT = 4789  # Swarm's data path
VXLAN_OVERHEAD = 50  # outer Ethernet + IP + UDP + VXLAN headers

# The moby issues each kind of mismatch matches (field notes: how Swarm's networking breaks).
ISSUES = {
    "net.ipv4.ip_forward": "moby#38723, moby#47966",
    "net.ipv4.vs.expire_nodest_conn": "moby#30464",
    "forward": "moby#39439, moby#49536",
    "stale-backend": "moby#30464, moby#33790, moby#28564",
    "dns": "moby#40300",
    "mtu": "libnetwork#2661, moby#41775",
    "overlay-peer": "moby#29417, moby#33416",
    "data-path": "moby#33416, moby#25836",
    "idle-timeout": "moby#31208, moby#37822",
}
# The kernel's IPVS timeout for an idle established TCP connection; Docker keeps it.
IPVS_TCP_TIMEOUT_S = 900


@dataclass(frozen=True)
class Finding:
    node: str
    sandbox: str
    what: str
    expected: str
    actual: str
    repair: str
    issue: str = ""
    service: str = ""

    def line(self) -> str:
        issue = f" ({self.issue})" if self.issue else ""
        return (f"{self.node} {self.sandbox}: {self.what}: expected {self.expected}; kernel has "
                f"{self.actual}; repair: {self.repair}{issue}")

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Report:
    source: str
    nodes: int
    sandboxes: int
    checks: int
    findings: tuple[Finding, ...]
    notes: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {"source": self.source, "nodes": self.nodes, "sandboxes": self.sandboxes,
                "checks": self.checks, "notes": list(self.notes),
                "findings": [f.to_json() for f in self.findings]}


def check(intent: plan.Intent, service: str | None = None) -> Report:
    """Every check of every node in intent; with `service`, only what touches it (and the
    node-wide state every service depends on)."""
    findings: list[Finding] = []
    checks = 0
    for node in intent.nodes:
        for result in _node(intent, node):
            checks += 1
            if result is not None and (service is None or result.service in ("", service)):
                findings.append(result)
    return Report(intent.source, len(intent.nodes), sum(len(n.sandboxes) for n in intent.nodes),
                  checks, tuple(findings), intent.notes)


# Each check yields None (as expected) or a Finding.
Checked = Iterator[Finding | None]


def _node(intent: plan.Intent, node: plan.NodeIntent) -> Checked:
    yield from _conntrack_max(node)
    for sbx in node.sandboxes:
        yield from _sysctls(sbx)
        if sbx.kind in ("ingress", "lb"):
            yield from _rp_filter(sbx)
        yield from _conntrack_use(node, sbx)
        if sbx.serves:
            yield from _serves(sbx)
        if sbx.balancers:
            yield from _marks(intent, sbx)
            if intent.ipvs:
                yield from _ipvs(intent, sbx)
    for pub in node.published:
        yield from _published(intent, node, pub)
    if node.overlays and node.addr:
        yield from _data_path(node)
    underlay = _underlay_mtu(node)
    for ov in node.overlays:
        yield from _overlay(node, ov, underlay)
    for probe in node.dns:
        yield from _dns(probe)


def _dns(probe: plan.DnsProbe) -> Checked:
    """Docker DNS, asked from inside a task, answers the running tasks (or the VIP)."""
    answers = kernel_state.dns_answers(probe.path, probe.name)
    got = set(answers or ())
    if answers is not None and got == probe.expected:
        yield None
        return
    actual = "no answer" if answers is None else ", ".join(answers) or "an empty answer"
    stale = sorted(got - probe.expected)
    note = f" ({', '.join(stale)} is no running task's)" if stale else ""
    yield Finding(probe.node, probe.sandbox, f"Docker DNS answer for {probe.name}",
                  ", ".join(sorted(probe.expected)) or "no address", actual + note,
                  f"docker service update --force {probe.service}", ISSUES["dns"],
                  probe.service)


def _in(path: Path, cmd: str) -> str:
    """cmd run in the netns at path (as is, for this process's own netns)."""
    try:
        if path.stat().st_ino == os.stat("/proc/self/ns/net").st_ino:
            return cmd
    except OSError:
        pass
    if path.parent == Path("/var/run/netns"):
        return f"ip netns exec {path.name} {cmd}"
    return f"nsenter --net={path} {cmd}"


def _sysctls(sbx: plan.Sandbox) -> Checked:
    for key, want in sbx.sysctls:
        have = kernel_state.sysctl(sbx.path, key)
        if have == want or (have is None and key.startswith("net.ipv4.vs.")):
            yield None  # no IPVS in this netns: the IPVS check says so
            continue
        yield Finding(sbx.node, sbx.name, key, want, have or "nothing (netns gone?)",
                      _in(sbx.path, f"sysctl -w {key}={want}"), ISSUES.get(key, ""))


def _rp_filter(sbx: plan.Sandbox) -> Checked:
    every = kernel_state.sysctl(sbx.path, "net.ipv4.conf.all.rp_filter") or "0"
    for link in kernel_state.links(sbx.path):
        if link.name == "lo" or not link.up:
            continue
        own = kernel_state.sysctl(sbx.path, f"net.ipv4.conf.{link.name}.rp_filter") or "0"
        # The kernel uses the larger of conf/all and conf/<dev>: 1 is strict.
        if max(int(every), int(own)) != 1:
            yield None
            continue
        keys = [k for k, v in (("all", every), (link.name, own)) if v == "1"]
        yield Finding(sbx.node, sbx.name, f"rp_filter on {link.name}",
                      "0 or 2 (loose: Swarm's paths are asymmetric)",
                      "1 (strict: a packet whose reply route leaves by another interface is "
                      "dropped, IP_RPFILTER)",
                      _in(sbx.path, "sysctl -w " + " ".join(
                          f"net.ipv4.conf.{k}.rp_filter=2" for k in keys)))


def _filter_drop(netns: Path, chain: str, pkt: filter_path.Packet,
                 accept: str) -> tuple[str, str] | None:
    """Where `chain` in netns (either iptables back end) drops pkt: (what the kernel has, the
    command that repairs it), None if every client's pkt passes. `accept` matches pkt in an
    ACCEPT rule."""
    for flavour, text in kernel_state.iptables_save(netns, "filter").items():
        out = filter_path.walk(filter_path.parse(text), chain, pkt)
        if out.accepted and not out.may_drop:
            continue
        tool = kernel_state.IPTABLES[flavour]
        rule = out.by if not out.accepted else out.may_drop[0]
        where = "" if flavour == "nft" else f" ({tool})"
        if rule.startswith("policy"):
            return (f"dropped by {chain} {rule}{where}",
                    _in(netns, f"{tool} -I {chain} {accept} -j ACCEPT"))
        some = "" if not out.accepted else " for some clients"
        return (f"dropped{some} by {rule}{where}",
                _in(netns, f"{tool} " + rule.replace("-A ", "-D ", 1)))
    return None


def _serves(sbx: plan.Sandbox) -> Checked:
    """The task listens on the port its service sends to, and its INPUT chain lets it in."""
    listening = kernel_state.listening(sbx.path)
    for s in {(s.service, s.proto, s.port): s for s in sbx.serves}.values():
        yield None if (s.proto, s.port) in listening else Finding(
            sbx.node, sbx.name, f"a listener on {s.proto}/{s.port} of {s.service}",
            "a socket listening there", "none (connections are refused with RST)",
            f"docker service ps {s.service}; the task's process is down or listens elsewhere",
            service=s.service)
    for s in sbx.serves:
        where = f"{s.proto}/{s.port} ({s.addr}) of {s.service}"
        drop = _filter_drop(sbx.path, "INPUT", filter_path.Packet(s.proto, dport=s.port,
                                                                  dst=s.addr),
                            f"-p {s.proto} --dport {s.port}")
        yield None if drop is None else Finding(
            sbx.node, sbx.name, f"INPUT of {where}", "accepted",
            f"{drop[0]} (the client waits for an answer that never comes)", drop[1],
            service=s.service)


def _conntrack_max(node: plan.NodeIntent) -> Checked:
    have = kernel_state.sysctl(node.host, "net.netfilter.nf_conntrack_max")
    if have is None or int(have) >= TOO_SMALL:
        yield None
        return
    yield Finding(node.name, "host", "net.netfilter.nf_conntrack_max", f">= {TOO_SMALL}",
                  f"{have} (new connections are dropped once every netns holds {have})",
                  # One max for the whole kernel: only the initial netns may set it.
                  "sysctl -w net.netfilter.nf_conntrack_max=262144")


def _conntrack_use(node: plan.NodeIntent, sbx: plan.Sandbox) -> Checked:
    count = kernel_state.sysctl(sbx.path, "net.netfilter.nf_conntrack_count")
    top = kernel_state.sysctl(node.host, "net.netfilter.nf_conntrack_max")
    if count is None or top is None or int(top) == 0 or int(count) < FULL * int(top):
        yield None
        return
    bigger = max(4 * int(top), 262144)
    yield Finding(sbx.node, sbx.name, "conntrack table", f"below {FULL:.0%} of "
                  f"nf_conntrack_max", f"{count} of {top} entries (full: new connections drop, "
                  "NETFILTER_DROP)",
                  f"sysctl -w net.netfilter.nf_conntrack_max={bigger}")


def _marks(intent: plan.Intent, sbx: plan.Sandbox) -> Checked:
    mangle = "".join(kernel_state.iptables_save(sbx.path, "mangle").values())
    marks = {r.mark for r in parse_mark_rules(mangle)}
    for b in sbx.balancers:
        if b.fwmark in marks:
            yield None
            continue
        yield Finding(sbx.node, sbx.name, f"mangle MARK for service {b.service}",
                      f"a MARK --set-mark {b.fwmark:#x} rule (fwmark {b.fwmark})",
                      "no such rule (its packets reach no balancer)",
                      intent.rebuild.format(service=b.service), service=b.service)


def _ipvs(intent: plan.Intent, sbx: plan.Sandbox) -> Checked:
    tables = {t.fwmark: t for t in read_ipvs(sbx.path) if t.fwmark}
    for b in sbx.balancers:
        yield from _balancer(intent, sbx, b, tables.get(b.fwmark))
    yield from _idle_timeout(sbx)


def _idle_timeout(sbx: plan.Sandbox) -> Checked:
    """An IPVS tcp timeout below the kernel's cuts connections idle for less: their next
    packet meets no entry and gets a RST (moby#31208)."""
    have = kernel_state.ipvs_timeouts(sbx.path)
    if have is None or have.tcp >= IPVS_TCP_TIMEOUT_S:
        yield None
        return
    yield Finding(sbx.node, sbx.name, "IPVS tcp idle timeout",
                  f">= {IPVS_TCP_TIMEOUT_S} s (the kernel's default), with clients' TCP "
                  "keepalive below it", f"{have.tcp} s: a connection idle longer loses its "
                  "IPVS entry and its next packet is reset",
                  _in(sbx.path, f"ipvsadm --set {IPVS_TCP_TIMEOUT_S} {have.tcpfin} {have.udp}"),
                  ISSUES["idle-timeout"])


def _balancer(intent: plan.Intent, sbx: plan.Sandbox, b: plan.Balancer,
              table: IpvsService | None) -> Checked:
    if table is None:
        yield Finding(sbx.node, sbx.name, f"IPVS service fwmark {b.fwmark} ({b.service})",
                      f"FWM {b.fwmark} -> {', '.join(sorted(b.dests))}", "no such IPVS service",
                      intent.rebuild.format(service=b.service), ISSUES["stale-backend"],
                      b.service)
        return
    have = set(table.dests)
    for stale in sorted(have - b.dests):
        yield Finding(sbx.node, sbx.name, f"IPVS real server {stale} (fwmark {b.fwmark}, "
                      f"{b.service})", "only running tasks: " + ", ".join(sorted(b.dests)),
                      f"{stale}, which no running task has (stale backend)",
                      _in(sbx.path, f"ipvsadm -d -f {b.fwmark} -r {stale}"),
                      ISSUES["stale-backend"], b.service)
    for missing in sorted(b.dests - have):
        yield Finding(sbx.node, sbx.name, f"IPVS real server {missing} (fwmark {b.fwmark}, "
                      f"{b.service})", f"running task {missing} balanced",
                      "not among the real servers", intent.rebuild.format(service=b.service),
                      ISSUES["stale-backend"], b.service)
    if have == b.dests:
        yield None


def _published(intent: plan.Intent, node: plan.NodeIntent, pub: plan.Published) -> Checked:
    nat = "".join(kernel_state.iptables_save(node.host, "nat").values())
    target = f"--to-destination {pub.dnat_to}:{pub.port}"
    dnat = [line for line in nat.splitlines() if line.startswith("-A ") and "-j DNAT" in line
            and f"--dport {pub.port}" in line and target in line]
    where = f"{pub.proto}/{pub.port} of {pub.service}"
    yield None if dnat else Finding(
        node.name, "host", f"DOCKER-INGRESS DNAT of {where}",
        f"DNAT {target}", "no such rule (the published port leads nowhere)",
        intent.rebuild.format(service=pub.service), service=pub.service)
    legs = (
        ("to the ingress sandbox", filter_path.Packet(pub.proto, dport=pub.port, dst=pub.dnat_to,
                                                      out_iface="docker_gwbridge"),
         f"-p {pub.proto} --dport {pub.port} -d {pub.dnat_to}"),
        ("its replies", filter_path.Packet(pub.proto, sport=pub.port, ctstate="ESTABLISHED"),
         f"-p {pub.proto} --sport {pub.port} -m conntrack --ctstate ESTABLISHED"),
    )
    for leg, pkt, accept in legs:
        drop = _filter_drop(node.host, "FORWARD", pkt, accept)
        yield None if drop is None else Finding(
            node.name, "host", f"FORWARD of {where}, {leg}", "accepted", drop[0], drop[1],
            ISSUES["forward"], pub.service)


def _data_path(node: plan.NodeIntent) -> Checked:
    """The overlay's VXLAN packets (udp/4789) must get into the node."""
    drop = _filter_drop(node.host, "INPUT", filter_path.Packet("udp", dport=VXLAN_PORT,
                                                               dst=node.addr),
                        f"-p udp --dport {VXLAN_PORT}")
    yield None if drop is None else Finding(
        node.name, "host", f"INPUT of the data path (udp/{VXLAN_PORT})", "accepted", drop[0],
        drop[1], ISSUES["data-path"])


def _underlay_mtu(node: plan.NodeIntent) -> int | None:
    if node.addr is None:
        return None
    for link in kernel_state.links(node.host):
        if node.addr in link.addrs:
            return link.mtu
    return None


def _overlay(node: plan.NodeIntent, ov: plan.Overlay, underlay: int | None) -> Checked:
    tables = kernel_state.vxlan_tables(ov.path)
    name = ov.path.name
    if not tables:
        yield Finding(node.name, name, f"VXLAN device of {ov.network}", "one", "none",
                      f"docker network inspect {ov.network}", ISSUES["overlay-peer"])
        return
    vx = tables[0]
    peers = set(ov.remote.values())
    for vtep in sorted(peers - vx.fdb_dst):
        yield Finding(node.name, name, f"{vx.device} FDB toward node {vtep}",
                      f"entries sending {ov.network}'s remote tasks to {vtep}", "none",
                      f"check gossip (tcp/udp 7946) between this node and {vtep}",
                      ISSUES["overlay-peer"])
    missing = sorted(set(ov.remote) - vx.neigh)
    yield None if not missing else Finding(
        node.name, name, f"{vx.device} neighbours of remote tasks",
        ", ".join(missing), "no permanent entry for them",
        "check gossip (tcp/udp 7946) between the nodes", ISSUES["overlay-peer"])
    links = {lk.name: lk for lk in kernel_state.links(ov.path)}
    mtu = links[vx.device].mtu if vx.device in links else 0
    if underlay is None or mtu + VXLAN_OVERHEAD <= underlay:
        yield None
        return
    yield Finding(node.name, name, f"MTU of {ov.network}",
                  f"<= {underlay - VXLAN_OVERHEAD} (underlay {underlay} - {VXLAN_OVERHEAD} "
                  "VXLAN)", f"{mtu}: full-size packets die on the underlay",
                  f"docker network create --opt com.docker.network.driver.mtu="
                  f"{underlay - VXLAN_OVERHEAD} ... (recreate {ov.network})", ISSUES["mtu"])
