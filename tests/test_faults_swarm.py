"""Faults in a real 2-node swarm (two dockerds, real VXLAN; this kernel has no IPVS, so DNS
round robin carries the traffic): `check` names each before traffic, and the requests that
meet it get the verdict. Every fault is undone also when a test fails."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress

import docker
import pytest
from dns_responder import responding
from docker.types import DNSConfig
from faults import check, injected, traced
from swarm_fixture import dnsrr_spread, two_node_swarm, vote_on_every_node

from tracer.enrich.docker_topology import DOCKER_GONE
from tracer.enrich.ipvs import ipvs_available
from tracer.lab import swarm
from tracer.lab.swarm.daemons import DOCKERD
from tracer.lab.swarm.image import IMAGE
from tracer.lab.swarm.layout import VETH
from tracer.lab.swarm.services import GRACE_NS, NETWORK, READY_TIMEOUT_S, client_container

pytestmark = [
    pytest.mark.docker,
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root: dockerd, netns, iptables"),
    pytest.mark.skipif(not DOCKERD.exists(), reason="docker.io is not installed (scripts/setup)"),
]
DOCKER = "docker"
NODE2_NETNS = "stlab-node2"
OVERLAY_PREFIX = "10.0.1."  # overlay1's addresses: the lab's own requests, not the machine's
MAX_TRIES = 20
STALE = "10.0.0.99"  # on the ingress network, and no task's
BIG, PAGE = 30_000, "/www/big"
SEARCH, NOSUCH = "stlab.test", "nosuch"  # a search domain, and a name nothing has


@pytest.fixture(scope="module")
def lab() -> Iterator[swarm.SwarmLab]:
    with two_node_swarm() as up:
        yield up


def test_healthy_swarm_check_prints_nothing_wrong(lab: swarm.SwarmLab) -> None:
    rc, findings, text = check(DOCKER)
    assert (rc, findings) == (0, []), text
    assert "2 node(s)" in text and "nothing wrong" in text


@contextmanager
def big_page(lab: swarm.SwarmLab) -> Iterator[str]:
    """A 30 kB page on node2's vote task (its responses take full-size packets); yields the
    task's overlay address."""
    n2 = docker.DockerClient(base_url=lab.nodes[1].socket, timeout=60)
    try:
        task = n2.containers.list(filters={"label": "com.docker.swarm.service.name=vote"})[0]
        code, out = task.exec_run(["sh", "-c", f"head -c {BIG} /dev/zero | tr '\\0' a > {PAGE}"])
        assert code == 0, out
        try:
            yield task.attrs["NetworkSettings"]["Networks"][NETWORK]["IPAddress"]
        finally:
            task.exec_run(["rm", "-f", PAGE])
    finally:
        n2.close()


def _fetch(lab: swarm.SwarmLab, url: str) -> int:
    """Bytes the client task (node1) got for url within 5 s."""
    with lab.open_clients() as clients:
        code, out = client_container(clients).exec_run(["timeout", "5", "wget", "-qO-", url])
    return len(out) if code == 0 else -1


def _gso_max_segs() -> str:
    out = subprocess.run(["ip", "-d", "-n", NODE2_NETNS, "link", "show", VETH[1]],
                         capture_output=True, text=True, check=True).stdout
    return out.split("gso_max_segs ")[1].split()[0]


def test_underlay_mtu_below_the_overlay(lab: swarm.SwarmLab) -> None:
    """(d) node1's end of the underlay takes 1400 bytes, the overlay sends 1450 + 50: small
    requests pass, a large response dies. node2's end segments in software (gso_max_segs 1),
    as a NIC would before the wire: a veth would hand a GSO packet over whole, MTU or not."""
    segs = _gso_max_segs()
    node2 = ["ip", "-n", NODE2_NETNS, "link", "set", VETH[1], "gso_max_segs"]
    with injected((["ip", "link", "set", VETH[0], "mtu", "1400"], [*node2, "1"]),
                  (["ip", "link", "set", VETH[0], "mtu", "1500"], [*node2, segs])):
        rc, findings, text = check(DOCKER)
        assert rc == 1
        mtu = [f for f in findings if f["what"] == f"MTU of {NETWORK}"]
        assert mtu and mtu[0]["node"] == "node1" and mtu[0]["actual"].startswith("1450"), text
        with big_page(lab) as task, traced("--port", "80", "--timeout", "30") as requests:
            small, big = _fetch(lab, f"http://{task}/"), _fetch(lab, f"http://{task}/big")
    assert small > 0 and big == -1, (small, big)
    cut = [r for r in requests if r.get("verdict", {}).get("cause") == "mtu"]
    assert len(cut) == 1, [(r["status"], r.get("verdict")) for r in requests]
    v = cut[0]["verdict"]
    assert v["hop"] == "drop" and "a VXLAN packet of 1500 bytes" in v["evidence"], v
    assert "libnetwork#2661" in v["hint"] and "com.docker.network.driver.mtu" in v["hint"], v
    assert cut[0]["resumed"]["opened_by"] is not None
    assert all(r["status"] == "ok" for r in requests if r is not cut[0]
               and r["entry"].startswith(task)), requests
    after = check(DOCKER)
    assert after[:2] == (0, []), after[2]


def test_data_path_port_blocked(lab: swarm.SwarmLab) -> None:
    rule = ["INPUT", "-p", "udp", "--dport", "4789", "-j", "DROP"]
    ns = ["ip", "netns", "exec", NODE2_NETNS, "iptables"]
    vote_on_every_node(lab)  # half the requests must cross to node2's task
    with injected(([*ns, "-I", *rule],), ([*ns, "-D", *rule],)):
        rc, findings, text = check(DOCKER)
        assert rc == 1
        assert any(f["node"] == "node2" and f["what"] == "INPUT of the data path (udp/4789)"
                   for f in findings), text
        # Up to 12 requests, half of them waiting 3 s for an answer that never comes.
        with traced("--port", "80", "--timeout", "45") as requests:
            dnsrr_spread(lab, most=12)
    # The client task on node1 asks for both vote tasks; the one on node2 is cut off, where
    # node2's INPUT drops the VXLAN packets that carry it.
    crossing = [r for r in requests if r["client"].startswith(OVERLAY_PREFIX)
                and r["status"] != "ok"]
    assert crossing, requests
    for r in crossing:
        v = r["verdict"]
        assert (v["node"], v["hop"], v["cause"]) == ("node2", "drop", "vxlan-lost"), r
        assert "was dropped in node2 host: NETFILTER_DROP" in v["evidence"], v
        assert "-A INPUT -p udp -m udp --dport 4789 -j DROP" in v["evidence"], v


@pytest.mark.skipif(not ipvs_available(), reason="needs IPVS: tests/test_faults_vm.py runs it "
                    "in the stock-kernel VM lab")
def test_stale_real_server_in_dockers_ipvs(lab: swarm.SwarmLab) -> None:
    """(a) on Docker's own balancer: node1's ingress_sbox gets a real server no task has."""
    ipvsadm = ["nsenter", f"--net={lab.nodes[0].exec_root / 'netns' / 'ingress_sbox'}",
               "ipvsadm"]
    table = subprocess.run([*ipvsadm, "-Ln"], capture_output=True, text=True, check=True).stdout
    fwmark = next(line.split()[1] for line in table.splitlines() if line.startswith("FWM"))
    dest = ["-f", fwmark, "-r", f"{STALE}:0"]
    with injected(([*ipvsadm, "-a", *dest, "-m"],), ([*ipvsadm, "-d", *dest],)):
        rc, findings, text = check(DOCKER)
    assert rc == 1
    assert any(f["node"] == "node1" and f["sandbox"] == "ingress_sbox"
               and f["what"].startswith(f"IPVS real server {STALE} (fwmark {fwmark}")
               and "stale backend" in f["actual"] for f in findings), text


def _task_of(client: docker.DockerClient, service: str) -> docker.models.containers.Container:
    """The running container of service's task on this node, once it runs."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        found = client.containers.list(filters={"label": f"com.docker.swarm.service.name="
                                                f"{service}", "status": "running"})
        if found:
            return found[0]
        time.sleep(0.2)
    raise AssertionError(f"the task of {service} did not run within {READY_TIMEOUT_S:.0f} s")


@pytest.fixture
def asker(lab: swarm.SwarmLab) -> Iterator[docker.models.containers.Container]:
    """A task on node1 whose resolv.conf searches SEARCH, and whose Docker DNS forwards the
    names it does not know to 127.0.0.1 in the task's own netns (`--dns 127.0.0.1` means the
    container's loopback), where tests/dns_responder.py answers NXDOMAIN: no query leaves the
    lab (the lab's other tasks forward to the host's resolvers)."""
    mgr = docker.DockerClient(base_url=lab.nodes[0].socket, timeout=60)
    svc = mgr.services.create(IMAGE, ["sleep", "600"], name="asker", networks=[NETWORK],
                              dns_config=DNSConfig(nameservers=["127.0.0.1"], search=[SEARCH]),
                              constraints=[f"node.hostname=={lab.nodes[0].name}"],
                              stop_grace_period=GRACE_NS)
    try:
        task = _task_of(mgr, "asker")
        with responding(["nsenter", f"--net={task.attrs['NetworkSettings']['SandboxKey']}"]):
            yield task
    finally:
        svc.remove()
        mgr.close()


def test_dns_name_that_does_not_exist(lab: swarm.SwarmLab,
                                      asker: docker.models.containers.Container) -> None:
    """A task asks for a name no service has: Docker DNS answers NXDOMAIN for it, then for
    its expansion with the task's search domain (Docker sets ndots:0: the bare name first).
    The bare name's NXDOMAIN is a step of the lookup; the expansion's, the last name tried,
    its failure: the lookup's one verdict. Docker DNS's forwards of the expansion (to the
    responder) point at that query, without a verdict of their own."""
    code, resolv = asker.exec_run(["cat", "/etc/resolv.conf"])
    assert f"search {SEARCH}" in resolv.decode() and "ndots:0" in resolv.decode(), resolv
    with traced("--port", "53", "--timeout", "15") as requests:
        code, out = asker.exec_run(["timeout", "5", "wget", "-qO-", f"http://{NOSUCH}/"])
    assert code != 0 and b"bad address" in out, out
    asked = {r["dns"]["name"]: r for r in requests if r["entry"] == "127.0.0.11:53"
             and r.get("dns")}
    bare, expansion = asked.get(NOSUCH), asked.get(f"{NOSUCH}.{SEARCH}")
    assert bare is not None and expansion is not None, [r.get("dns") for r in requests]
    assert (bare["status"], bare["dns"]["rcode"]) == ("dns-search", "NXDOMAIN"), bare
    assert "verdict" not in bare and bare["dns"]["tried"] == [], bare
    r = expansion
    assert (r["status"], r["dns"]["rcode"], r["dns"]["addrs"]) == ("dns-failed", "NXDOMAIN", [])
    v = r["verdict"]
    assert (v["node"], v["hop"], v["cause"]) == ("node1", "dns", "dns-nxdomain"), r
    assert f"no service, task, container or alias named {NOSUCH}" in v["hint"], v
    assert "Docker DNS (127.0.0.11) answered nosuch.stlab.test: NXDOMAIN" in v["evidence"], v
    assert expansion["dns"]["tried"] == [{"id": bare["id"], "name": NOSUCH,
                                          "rcode": "NXDOMAIN"}], expansion
    assert f"a search-domain expansion of {NOSUCH} (resolv.conf `search {SEARCH}`)" in \
        expansion["verdict"]["evidence"], expansion["verdict"]
    names = (NOSUCH, f"{NOSUCH}.{SEARCH}")
    lookup = [r for r in requests if r.get("dns") and r["dns"]["name"] in names]
    assert [r["id"] for r in lookup if r.get("verdict")] == [expansion["id"]], lookup
    forwards = [r for r in lookup if r["entry"] != "127.0.0.11:53"
                and r["dns"]["name"] == f"{NOSUCH}.{SEARCH}"]
    assert forwards and {(r["status"], r["dns"].get("forwarded_for")) for r in forwards} == {
        ("dns-forwarded", expansion["id"])}, forwards


def test_service_found_after_a_search_domain(lab: swarm.SwarmLab,
                                             asker: docker.models.containers.Container) -> None:
    """A host's `search` line in a container's resolv.conf without Swarm's ndots:0 (a plain
    container's, as Docker writes it: the libc's default ndots:1): the resolver asks
    vote.SEARCH first, which Docker DNS forwards and gets NXDOMAIN for, then vote, which
    Docker DNS answers. A step of a lookup that found the service, not a failure."""
    # Written in place: Docker bind-mounts the file (Docker 20.10 writes ndots:0 for a
    # service whatever its --dns-option says).
    code, out = asker.exec_run(["sh", "-c", f"printf 'search {SEARCH}\\nnameserver "
                                "127.0.0.11\\n' > /etc/resolv.conf && cat /etc/resolv.conf"])
    assert code == 0 and "ndots" not in out.decode() and SEARCH in out.decode(), out
    with traced("--port", "53", "--timeout", "15") as requests:
        code, out = asker.exec_run(["timeout", "5", "wget", "-qO-", "http://vote/"])
    assert code == 0, out
    asked = [r for r in requests if r["entry"] == "127.0.0.11:53" and r.get("dns")]
    expansions = [r for r in asked if r["dns"]["name"] == f"vote.{SEARCH}"]
    found = [r for r in asked if r["dns"]["name"] == "vote" and r["dns"]["addrs"]]
    assert expansions and found, [r.get("dns") for r in requests]
    for r in expansions:
        assert (r["status"], r["dns"]["rcode"]) == ("dns-search", "NXDOMAIN"), r
    assert not [r for r in requests if r.get("verdict")], requests
    assert found[0]["status"] == "ok", found[0]
    assert {q["name"] for q in found[0]["dns"]["tried"]} == {f"vote.{SEARCH}"}, found[0]


@pytest.fixture
def stowaway(lab: swarm.SwarmLab) -> Iterator[str]:
    """A container that is no task of `vote` but answers to its name on overlay1 (an alias):
    Docker DNS then hands out an address no running task has. Nothing listens on it."""
    client = docker.DockerClient(base_url=lab.nodes[0].socket, timeout=60)
    ct = client.containers.create("bb:latest", ["sleep", "600"], network_disabled=False,
                                  name="stlab-stowaway")
    try:
        client.networks.get(NETWORK).connect(ct, aliases=["vote"])
        ct.start()
        ct.reload()
        yield ct.attrs["NetworkSettings"]["Networks"][NETWORK]["IPAddress"]
    finally:
        # Docker DNS was seen to keep a removed alias's record for minutes: this test runs
        # last in the module, the swarm goes down after it.
        with suppress(*DOCKER_GONE):
            client.networks.get(NETWORK).disconnect(ct, force=True)
        ct.remove(force=True)
        client.close()


def test_dns_answering_an_address_no_task_has(lab: swarm.SwarmLab, stowaway: str) -> None:
    rc, findings, text = check(DOCKER, "--service", "vote")
    assert rc == 1
    assert any(f["what"] == "Docker DNS answer for vote" and stowaway in f["actual"]
               and f["issue"].startswith("moby#40300") for f in findings), text
    with traced("--port", "80", "--port", "53", "--timeout", "40") as requests:
        # Docker DNS shuffles the answers and the client takes the first: ask until one
        # took the stowaway's address.
        picked = False
        for _ in range(MAX_TRIES):
            picked = not swarm.traffic("dnsrr", 1)[0].ok
            if picked:
                break
    assert picked, f"none of {MAX_TRIES} requests picked the stowaway"
    stale = [r for r in requests if r["entry"].startswith(f"{stowaway}:")
             and r["client"].startswith(OVERLAY_PREFIX)]
    assert stale, requests
    for r in stale:
        v = r["verdict"]
        assert (v["hop"], v["cause"]) == ("dns", "dns-stale"), r
        assert stowaway in v["evidence"]
