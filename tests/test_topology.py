"""Names without Docker: history as of a time, snapshot/replay, real netns files and addresses,
real mangle MARK rules."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tracer.enrich.history import (
    RANK_DOCKER,
    RANK_NETNS,
    NameHistory,
    RecordedNames,
    recorded_names,
)
from tracer.enrich.mangle import MarkRule, read_mark_rules
from tracer.enrich.names import AddrName, NetnsName, short_task
from tracer.enrich.netns_names import NetnsNames, classify, nsfs_inode
from tracer.enrich.topology import Topology
from tracer.errors import TraceFileError

root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root: creates network namespaces")

VOTE1 = AddrName("task", "vote.1.aaaa1111", "c0ffee000001", "vote", "overlay1", "node1")
VOTE1B = AddrName("task", "vote.1.bbbb2222", "c0ffee000002", "vote", "overlay1", "node2")


def test_history_resolves_as_of_the_event_time() -> None:
    h = NameHistory()
    h.observe("docker", Topology(addrs={"10.0.1.3": VOTE1}), 0, RANK_DOCKER)
    # The task is replaced at t=100; its address goes to a new task at t=200.
    h.observe("docker", Topology(), 100, RANK_DOCKER)
    h.observe("docker", Topology(addrs={"10.0.1.3": VOTE1B}), 200, RANK_DOCKER)
    names = RecordedNames(h)
    assert names.addr("10.0.1.3", 50) == VOTE1
    assert names.addr("10.0.1.3", 250) == VOTE1B
    # Between the two: the nearest span (Docker's events come a little after the packets).
    assert names.addr("10.0.1.3", 120) == VOTE1
    assert names.addr("10.0.1.3", 190) == VOTE1B
    assert names.addr("10.9.9.9", 50) is None


def test_a_key_new_since_the_last_reading_is_named_from_then() -> None:
    """A netns made between two readings sends its first packets before the second: they are
    named too. A key that changes value changes at the reading that saw it."""
    h = NameHistory()
    old, new = NetnsName("old", "named"), NetnsName("new", "named")
    h.observe("netns", Topology(netns={7: old}), 0, RANK_NETNS)
    h.observe("netns", Topology(netns={8: new}), 100, RANK_NETNS)  # 7 gone, 8 new
    h.observe("netns", Topology(netns={8: new}), 200, RANK_NETNS, new_since=100)
    h.observe("netns", Topology(netns={8: old, 9: new}), 300, RANK_NETNS, new_since=200)
    assert h.known_at("netns", 9, 250) and not h.known_at("netns", 9, 150)
    assert RecordedNames(h).netns(9, 250) == new
    assert not h.known_at("netns", 8, 50)  # no new_since: from the reading itself
    assert RecordedNames(h).netns(8, 250) == new  # a changed value: from the reading
    assert RecordedNames(h).netns(8, 310) == old


def test_live_history_stays_bounded_and_keeps_what_events_can_refer_to() -> None:
    """Tasks replaced every 100 ns for a long time: a history that keeps what closed within
    1000 ns holds only the last few, names recent times as one that keeps everything does,
    and its log, read whole or piece by piece as agents and recorders do, rebuilds that."""
    keep, step, rounds = 1000, 100, 5000
    bounded, full = NameHistory(keep_closed_ns=keep), NameHistory()
    stable = NetnsName("host", "host", "node1")
    sent = bounded.to_dict()["count"]
    piecewise = NameHistory()  # what a collector rebuilds from the pieces an agent sends
    for i in range(rounds):
        topo = Topology(netns={1: stable}, addrs={f"10.{i // 250}.{i % 250}.3": VOTE1})
        for h in (bounded, full):
            h.observe("docker", topo, i * step, RANK_DOCKER)
        if i % 7 == 0:
            part = bounded.to_dict(sent)
            for change in part["changes"]:
                piecewise.apply(change)
            sent = part["count"]
    for change in bounded.to_dict(sent)["changes"]:
        piecewise.apply(change)
    now = (rounds - 1) * step
    assert len(bounded.keys("addrs")) <= 2 * keep // step + 2
    assert len(bounded.to_dict()["changes"]) <= 4 * keep // step + 4
    assert len(full.keys("addrs")) == rounds  # unbounded: the replay side keeps everything
    assert bounded.to_dict()["count"] == full.to_dict()["count"]  # numbering goes on
    whole = NameHistory.from_dict(json.loads(json.dumps(bounded.to_dict())))
    for i in range(rounds - keep // step, rounds):  # ended within the window: still named
        ip = f"10.{i // 250}.{i % 250}.3"
        for h in (bounded, whole, piecewise):
            for ts in (i * step, now):
                assert RecordedNames(h).addr(ip, ts) == RecordedNames(full).addr(ip, ts)
    for h in (bounded, whole, piecewise):
        assert RecordedNames(h).netns(1, 0) == stable  # open since the start: never forgotten
    assert RecordedNames(bounded).addr("10.0.0.3", now) is None  # long gone: forgotten


def test_docker_outranks_netns_files_for_the_same_key() -> None:
    h = NameHistory()
    task_ns = NetnsName("vote.1.aaaa1111", "container", "node1", "c0ffee000001",
                        "vote.1.aaaa1111", "vote")
    h.observe("netns", Topology(netns={7: NetnsName("c0ffee000001", "container")}), 0, RANK_NETNS)
    h.observe("docker", Topology(netns={7: task_ns}), 0, RANK_DOCKER)
    assert RecordedNames(h).netns(7, 10) == task_ns
    assert task_ns.label == "vote.1.aaaa"


def test_fwmark_from_rule_then_node_lb_index() -> None:
    h = NameHistory()
    h.observe("docker", Topology(
        netns={11: NetnsName("ingress_sbox", "ingress_sbox", "node1"),
               12: NetnsName("client.1.x", "container", "node2")},
        fwmarks={(11, 0x105): "vote"},
        lb_index={("node2", 0x103): "vote", ("node1", 0x103): "vote"}), 0, RANK_DOCKER)
    names = RecordedNames(h)
    assert names.fwmark(11, 0x105, 5) == "vote"
    assert names.fwmark(12, 0x103, 5) == "vote"
    assert names.fwmark(99, 0x103, 5) == "vote"  # unknown netns, but one service per mark
    assert names.fwmark(12, 0x999, 5) is None


def test_snapshot_round_trip_resolves_like_live() -> None:
    h = NameHistory()
    h.observe("docker", Topology(addrs={"10.0.1.3": VOTE1}, ports={("tcp", 8080): "vote"},
                                 netns={5: NetnsName("host", "host", "node1")},
                                 vnis={4097: "overlay1"}), 0, RANK_DOCKER)
    h.observe("docker", Topology(addrs={"10.0.1.3": VOTE1B}), 300, RANK_DOCKER)
    live = RecordedNames(h)
    snap = json.loads(json.dumps(live.snapshot()))  # as stored in a trace file
    replay = recorded_names(snap)
    for ts in (0, 299, 300, 10**12):
        assert replay.addr("10.0.1.3", ts) == live.addr("10.0.1.3", ts)
        assert replay.netns(5, ts) == live.netns(5, ts)
    assert isinstance(replay, RecordedNames)
    assert replay.published_port(8080, 1) == "vote"
    assert replay.network_vni("overlay1", 1) == 4097
    part = live.changes_since(2)
    assert part["count"] == len(snap["changes"]) and part["changes"] == snap["changes"][2:]
    with pytest.raises(TraceFileError):
        recorded_names({"version": 99, "changes": []})


def test_classify_and_short_task() -> None:
    assert classify("stlab-ingress_sbox") == ("ingress_sbox", "ingress_sbox")
    assert classify("stlab-backend-1") == ("backend-1", "named")
    assert classify("lb_vgx0xjuq7") == ("lb_vgx0xjuq7", "lb")
    assert classify("1-vgx0xjuq74") == ("1-vgx0xjuq74", "overlay")
    assert classify("4014361c1f7a") == ("4014361c1f7a", "container")
    assert short_task("vote.2.uyhxq1w2e3r4") == "vote.2.uyhx"


@pytest.fixture
def netns_pair() -> Iterator[tuple[str, str]]:
    """Two real netns: one with the labs' prefix, one without; each holds an address."""
    names = (f"stlab-tnames{os.getpid()}", f"sttest-tnames{os.getpid()}")
    try:
        for i, name in enumerate(names):
            subprocess.run(["ip", "netns", "add", name], check=True)
            subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
            subprocess.run(["ip", "-n", name, "addr", "add", f"10.254.77.{i + 5}/32", "dev", "lo"],
                           check=True)
        yield names
    finally:
        for name in names:
            subprocess.run(["ip", "netns", "del", name], check=False, capture_output=True)


@root
def test_netns_names_by_inode_and_address(netns_pair: tuple[str, str]) -> None:
    lab_ns, other_ns = netns_pair
    with NetnsNames(poll_s=0.2) as names:
        ino = nsfs_inode(Path("/var/run/netns") / lab_ns)
        assert ino is not None
        got = names.netns(ino, 1)
        assert got is not None and got.name == lab_ns.removeprefix("stlab-")
        assert got.kind == "named"
        host = names.netns(os.stat("/proc/self/ns/net").st_ino, 1)
        assert host is not None and host.kind == "host" and host.name == "host"
        a = names.addr("10.254.77.5", 1)
        assert a is not None and a.kind == "sandbox" and a.netns == lab_ns.removeprefix("stlab-")
        b = names.addr("10.254.77.6", 1)
        assert b is not None and b.netns == other_ns
        # Gone later: still named at an earlier time, from the snapshot too.
        subprocess.run(["ip", "netns", "del", other_ns], check=True)
        names.refresh()
        snap = names.snapshot()
    other_ino_name = recorded_names(snap).addr("10.254.77.6", 1)
    assert other_ino_name is not None and other_ino_name.netns == other_ns


@root
def test_a_netns_younger_than_the_last_poll_is_named_at_once() -> None:
    """The probes hook a new netns within a second; names poll every few seconds. A lookup of
    an inode the names have not seen reads the files then, and an inode the kernel gave again
    to a new netns gets the new name, not the dead one's."""
    first, second = f"sttest-young{os.getpid()}", f"sttest-reborn{os.getpid()}"
    try:
        with NetnsNames(poll_s=3600) as names:
            subprocess.run(["ip", "netns", "add", first], check=True)
            ino = nsfs_inode(Path("/var/run/netns") / first)
            assert ino is not None
            got = names.netns(ino, time.monotonic_ns())
            assert got is not None and got.name == first
            subprocess.run(["ip", "netns", "del", first], check=True)
            names.refresh()  # the poll sees it gone
            for _ in range(50):  # until the kernel hands the inode out again
                subprocess.run(["ip", "netns", "add", second], check=True)
                if nsfs_inode(Path("/var/run/netns") / second) == ino:
                    break
                subprocess.run(["ip", "netns", "del", second], check=True)
            else:
                pytest.skip("the kernel did not reuse the inode")
            got = names.netns(ino, time.monotonic_ns())
            assert got is not None and got.name == second
    finally:
        for name in (first, second):
            subprocess.run(["ip", "netns", "del", name], check=False, capture_output=True)


@root
def test_mark_rules_read_from_a_real_netns(netns_pair: tuple[str, str]) -> None:
    ns = netns_pair[1]
    for rule in (
        ["OUTPUT", "-d", "10.0.0.9/32", "-j", "MARK", "--set-mark", "0x103"],
        ["PREROUTING", "-p", "tcp", "--dport", "8080", "-j", "MARK", "--set-mark", "0x105"],
    ):
        subprocess.run(["ip", "netns", "exec", ns, "iptables", "-w", "-t", "mangle", "-A", *rule],
                       check=True)
    rules = read_mark_rules(Path("/var/run/netns") / ns)
    assert MarkRule(0x103, "10.0.0.9", None, None) in rules
    assert MarkRule(0x105, None, "tcp", 8080) in rules


@root
def test_netns_lab_is_named_as_docker_would() -> None:
    """The netns lab (no Docker): "host", "ingress_sbox", "backend-1"; task addresses name the
    backend netns they live in."""
    from tracer import lab

    built = lab.status() is None
    if built and any(p.name.startswith(lab.LAB_PREFIX) for p in Path("/var/run/netns").iterdir()):
        pytest.skip("a netns lab is being built or torn down by someone else right now")
    if built:
        lab.up()
    try:
        with NetnsNames() as names:
            by_name = {ns.name: ns for ino in names.history.keys("netns")
                       if (ns := names.netns(int(ino), 1)) is not None}  # type: ignore[call-overload]
            assert by_name["ingress_sbox"].kind == "ingress_sbox"
            assert by_name["host"].kind == "host"
            assert by_name["backend-1"].kind == "named"
            for ip, backend in (("10.255.0.5", "backend-1"), ("10.255.0.6", "backend-2"),
                                ("10.0.0.10", "backend-1"), ("10.0.0.11", "backend-2")):
                a = names.addr(ip, 1)
                assert a is not None and a.netns == backend, (ip, a)
    finally:
        if built:
            lab.down()
