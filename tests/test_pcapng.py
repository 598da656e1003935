"""pcapng export read back by Debian's tshark: interfaces per netns, hop comments, NAT rewrites."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tracer.enrich.history import RANK_NETNS, NameHistory, RecordedNames
from tracer.enrich.names import AddrName, NetnsName
from tracer.enrich.topology import Topology
from tracer.source import SourceInfo
from tracer.tracefile import TraceHeader, TraceWriter
from tracer.tracefile.pcapng import write_pcapng
from tracer.tracefile.synthetic import (
    EVENTS_PER_REQUEST,
    MESH_MARK,
    NETNS_BACKEND,
    NETNS_HOST,
    NETNS_SBOX,
    mesh_events,
)
from tracer.tracefile.topology import trace_names

TSHARK = shutil.which("tshark") or "tshark"
pytestmark = pytest.mark.skipif(
    shutil.which("tshark") is None, reason="tshark not installed (scripts/setup)"
)

REQUESTS = 4
FIELDS = (
    "frame.interface_name",
    "ip.src",
    "ip.dst",
    "tcp.srcport",
    "tcp.dstport",
    "tcp.flags.str",
    "frame.p2p_dir",
    "frame.comment",
)


def _names_snapshot(ts: int) -> dict[str, object]:
    h = NameHistory()
    topo = Topology(
        netns={
            NETNS_HOST: NetnsName("host", "host", node="node1"),
            NETNS_SBOX: NetnsName("ingress_sbox", "ingress_sbox", node="node1"),
            NETNS_BACKEND: NetnsName(
                "vote.1.7iiuabcdef",
                "container",
                node="node2",
                task="vote.1.7iiuabcdef",
                service="vote",
            ),
        },
        addrs={"10.255.0.5": AddrName("task", task="vote.1.7iiuabcdef", service="vote")},
        fwmarks={(NETNS_SBOX, MESH_MARK): "vote"},
    )
    h.observe("docker:node1", topo, ts, RANK_NETNS)
    return RecordedNames(h).snapshot()


@pytest.fixture
def exported(tmp_path: Path) -> list[dict[str, str]]:
    events = mesh_events(REQUESTS)
    trace = tmp_path / "mesh.swt"
    header = TraceHeader.now(SourceInfo("core", "6.18", True), nodes=("node1",))
    with TraceWriter(trace, header) as w:
        w.topology(int(events[0]["ts_ns"]) - 1, _names_snapshot(int(events[0]["ts_ns"]) - 1))
        w.events(events)
    out = tmp_path / "mesh.pcapng"
    assert write_pcapng(trace, out, trace_names(trace)) == len(events)
    r = subprocess.run(
        [TSHARK, "-r", str(out), "-T", "fields", "-E", "separator=|",
         *(a for f in FIELDS for a in ("-e", f))],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "damaged" not in r.stderr and "isn't" not in r.stderr
    rows = [dict(zip(FIELDS, line.split("|"), strict=True)) for line in r.stdout.splitlines()]
    assert len(rows) == len(events)
    return rows


def test_one_interface_per_node_netns_ifindex(exported: list[dict[str, str]]) -> None:
    names = {row["frame.interface_name"] for row in exported}
    assert names == {
        "node1/host/if2",
        "node1/host/if5",
        "node1/ingress_sbox/if7",
        "node1/ingress_sbox/if9",
        "node2/vote.1.7iiuabcdef/if11",
    }


def test_first_request_shows_dnat_and_snat_hop_by_hop(exported: list[dict[str, str]]) -> None:
    syn = [r for r in exported[:EVENTS_PER_REQUEST] if r["tcp.flags.str"].strip("·") == "S"]
    path = [(r["frame.interface_name"], r["ip.src"], r["ip.dst"], r["tcp.dstport"]) for r in syn]
    assert path == [
        ("node1/host/if2", "192.168.100.2", "192.168.100.1", "8080"),  # as the client sent it
        ("node1/host/if5", "192.168.100.2", "172.18.0.2", "8080"),  # DOCKER-INGRESS DNAT
        ("node1/ingress_sbox/if7", "192.168.100.2", "172.18.0.2", "8080"),
        ("node1/ingress_sbox/if9", "10.255.0.2", "10.255.0.5", "80"),  # LB DNAT + SNAT
        ("node2/vote.1.7iiuabcdef/if11", "10.255.0.2", "10.255.0.5", "80"),
    ]
    comments = [r["frame.comment"] for r in syn]
    assert comments[0].startswith("node1 host prerouting if2 dnat 192.168.100.1:8080 -> 172.18")
    assert "mark 0x105 service vote" in comments[3]
    assert "snat 192.168.100.2:" in comments[3] and "-> 10.255.0.2:" in comments[3]
    assert "node2 vote.1.7iiuabcdef input" in comments[4] and "service vote" in comments[4]
    assert "task vote.1.7iiu" in comments[4]


def test_direction_flags(exported: list[dict[str, str]]) -> None:
    by_hook: dict[str, set[str]] = {}
    for r in exported:
        hook = r["frame.comment"].split()[2]
        by_hook.setdefault(hook, set()).add(r["frame.p2p_dir"])
    # epb_flags inbound -> p2p_dir 1 (received), outbound -> 0 (sent)
    assert by_hook["prerouting"] == {"1"} and by_hook["input"] == {"1"}
    assert by_hook["postrouting"] == {"0"} and by_hook["output"] == {"0"}


def test_no_payload_only_headers(exported: list[dict[str, str]], tmp_path: Path) -> None:
    r = subprocess.run(
        [TSHARK, "-r", str(tmp_path / "mesh.pcapng"), "-T", "fields", "-e", "frame.len",
         "-e", "tcp.len"],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    assert {line for line in r.stdout.splitlines()} == {"40\t0"}
