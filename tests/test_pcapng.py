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
        [TSHARK, "-r", str(out), "-T", "fields", "-E", "separator=/t",
         *(a for f in FIELDS for a in ("-e", f))],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "damaged" not in r.stderr and "isn't" not in r.stderr
    rows = [dict(zip(FIELDS, line.split("\t"), strict=True)) for line in r.stdout.splitlines()]
    assert len(rows) == len(events)
    return rows


def test_one_interface_per_node_netns_ifindex(exported: list[dict[str, str]]) -> None:
    names = {row["frame.interface_name"] for row in exported}
    assert names == {
        "node1/host/if2",
        "node1/host/if5",
        "node1/ingress_sbox/if7",
        "node1/ingress_sbox/if9",
        "node2/vote.1.7iiu/if11",  # a task by its short name, as everywhere else
    }


def test_first_request_shows_dnat_and_snat_hop_by_hop(exported: list[dict[str, str]]) -> None:
    first = [r for r in exported if r["frame.comment"].startswith("req #1 |")
             and "event rx" not in r["frame.comment"]]
    path = [(r["frame.interface_name"], r["ip.src"], r["ip.dst"]) for r in first[:5]]
    assert path == [
        ("node1/host/if2", "192.168.100.2", "192.168.100.1"),  # as the client sent it
        ("node1/host/if5", "192.168.100.2", "172.18.0.2"),  # DOCKER-INGRESS DNAT
        ("node1/ingress_sbox/if7", "192.168.100.2", "172.18.0.2"),
        ("node1/ingress_sbox/if9", "10.255.0.2", "10.255.0.5"),  # LB DNAT + SNAT
        ("node2/vote.1.7iiu/if11", "10.255.0.2", "10.255.0.5"),
    ]
    comments = [r["frame.comment"] for r in first]
    assert "hop dnat: DNAT -> 172.18.0.2:8080" in comments[1]
    assert "node1 host if5 | dnat 192.168.100.1:8080 -> 172.18" in comments[1]
    assert "mark 0x105 service vote" in comments[3]
    assert "snat 192.168.100.2:" in comments[3] and "-> 10.255.0.2:" in comments[3]
    assert "node2 vote.1.7iiu if11" in comments[4] and "service vote" in comments[4]
    assert "task vote.1.7iiu" in comments[4]


def test_direction_flags(exported: list[dict[str, str]]) -> None:
    by_hook: dict[str, set[str]] = {}
    for r in exported:
        hook = r["frame.comment"].split("| event ")[1].split()[0]
        by_hook.setdefault(hook, set()).add(r["frame.p2p_dir"])
    # epb_flags inbound -> p2p_dir 1 (received), outbound -> 0 (sent)
    assert by_hook["prerouting"] == {"1"} and by_hook["input"] == {"1"}
    assert by_hook["postrouting"] == {"0"} and by_hook["output"] == {"0"}


def test_no_payload_only_headers(exported: list[dict[str, str]], tmp_path: Path) -> None:
    r = subprocess.run(
        [TSHARK, "-r", str(tmp_path / "mesh.pcapng"), "-T", "fields", "-e", "frame.len",
         "-e", "frame.cap_len"],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    # 40 bytes of IPv4 + TCP headers; a repeat of an unchanged header keeps the IP part.
    assert {line for line in r.stdout.splitlines()} == {"40\t40", "40\t20"}


# -- the bundled sample: a real 2-node swarm ---------------------------------------------------


@pytest.fixture(scope="module")
def sample_pcap(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tracer.commands.replay import sample_path

    out = tmp_path_factory.mktemp("pcap") / "sample.pcapng"
    write_pcapng(sample_path(), out, trace_names(sample_path()))
    return out


def _tshark(path: Path, *args: str) -> list[str]:
    r = subprocess.run([TSHARK, "-r", str(path), *args], capture_output=True, text=True,
                       timeout=60, check=True)
    return r.stdout.splitlines()


def test_wireshark_sees_no_false_retransmissions(sample_pcap: Path) -> None:
    # The same packet at every hop is not a retransmission (283 of 450 frames were, before).
    assert _tshark(sample_pcap, "-Y", "tcp.analysis.retransmission") == []
    # Nor any other TCP analysis: an LB frame (IPVS sees no TCP flags) is no duplicate ACK.
    assert _tshark(sample_pcap, "-Y", "tcp.analysis.flags") == []
    assert _tshark(sample_pcap, "-Y", "_ws.expert.severity >= warning") == []
    assert len(_tshark(sample_pcap, "-Y", 'frame.comment contains "req #2 |"')) >= 10
    # Every packet of the sample belongs to a request: a hop, or its connection seen again.
    assert _tshark(sample_pcap, "-Y", 'frame.comment contains "no request"') == []
    assert _tshark(sample_pcap, "-Y", 'frame.comment contains "reply direction"')


def test_lb_frames_name_backend_and_scheduler(sample_pcap: Path) -> None:
    lb = _tshark(sample_pcap, "-Y", 'frame.comment contains "hop lb"', "-T", "fields",
                 "-e", "frame.comment")
    assert lb and all("backend vote-vip." in c and "scheduler rr" in c for c in lb)


def test_dns_frames_carry_the_answer(sample_pcap: Path) -> None:
    rows = _tshark(sample_pcap, "-Y", "dns.flags.response == 1", "-T", "fields",
                   "-e", "dns.qry.name", "-e", "dns.a", "-e", "dns.resp.ttl")
    assert "vote-vip\t10.0.1.7\t600" in rows
    assert "vote\t10.0.1.2,10.0.1.3\t600,600" in rows or "vote\t10.0.1.3,10.0.1.2\t600,600" in rows


def test_names_per_node_and_no_unknown_interface_names(sample_pcap: Path) -> None:
    rows = _tshark(sample_pcap, "-T", "fields", "-e", "frame.interface_name",
                   "-e", "frame.comment")
    assert not [r for r in rows if "netns:0" in r or "/if0" in r]
    # 172.17.0.3 is node2's ingress_sbox on node2 and a task's bridge address on node1.
    node2 = [r for r in rows if r.startswith("node2/host/") and "task vote.2.ncyq" in r]
    assert node2 == []
    drops = [r for r in rows if "event drop" in r]
    assert drops and all("drop reason " in r for r in drops)


def test_huge_times_and_strings_do_not_break_the_writer(tmp_path: Path) -> None:
    import io

    from tracer.tracefile.pcapng import PcapngWriter

    out = io.BytesIO()
    w = PcapngWriter(out, os_desc="x" * 10_000_000)
    i = w.interface("n" * 10_000_000, "d" * 70_000)
    w.packet(i, 1 << 80, b"\x45" + b"\0" * 39, comment="é" * 5_000_000)
    w.packet(i, -5, b"\x45" + b"\0" * 39)
    path = tmp_path / "big.pcapng"
    path.write_bytes(out.getvalue())
    assert len(_tshark(path)) == 2


def test_dns_answer_is_bounded() -> None:
    from tracer.tracefile.pcapng import dns_answer, synth_packet

    msg = dns_answer("x" * 70_000, ["10.0.0.1"] * 100_000, 1 << 40)
    assert len(msg) < 8192
    assert synth_packet(17, b"\x7f\0\0\x0b", b"\x7f\0\0\x01", b"\0\x35", b"\x12\x34", 0, 1, msg)


FAULTS = Path(__file__).parent / "fixtures" / "faults"


def test_ok_requests_carry_no_verdict(exported: list[dict[str, str]]) -> None:
    assert not [r for r in exported if "verdict:" in r["frame.comment"]]


def test_every_packet_of_a_failed_request_carries_its_verdict(tmp_path: Path) -> None:
    """The fault test's recording of FORWARD policy DROP: each of its packets has a second
    opt_comment with the verdict that `replay` prints."""
    out = tmp_path / "forward-drop.pcapng"
    trace = FAULTS / "forward-policy-drop.swt"
    written = write_pcapng(trace, out, trace_names(trace))
    r = subprocess.run(
        [TSHARK, "-r", str(out), "-T", "fields", "-E", "occurrence=a", "-E", "aggregator=\t",
         "-e", "frame.comment"],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    packets = [line.split("\t") for line in r.stdout.splitlines()]
    assert len(packets) == written
    for comments in packets:
        assert len(comments) == 2, comments
        hop, verdict = comments
        assert hop.startswith("req #"), comments
        assert verdict.startswith("verdict: forward-drop in host (drop): dropped in host "
                                  "after DNAT to 172.18.0.2:8080: NETFILTER_DROP"), comments
    shown = subprocess.run([TSHARK, "-r", str(out), "-Y", 'frame.comment contains "verdict: '
                            'forward-drop"'], capture_output=True, text=True, timeout=60,
                           check=True).stdout
    assert len(shown.splitlines()) == written


def test_packets_after_a_connection_failed_midway_carry_that_verdict(tmp_path: Path) -> None:
    """The underlay MTU fault's recording: the connection's request is ok, a later request
    starts where its full-size packets die; every such dropped packet (17 retransmissions,
    one hop) carries the later request's verdict."""
    out = tmp_path / "mtu.pcapng"
    trace = FAULTS / "underlay_mtu_below_the_overlay.swt"
    write_pcapng(trace, out, trace_names(trace))
    r = subprocess.run(
        [TSHARK, "-r", str(out), "-Y", 'frame.comment contains "drop reason NOT_SPECIFIED"',
         "-T", "fields", "-E", "occurrence=a", "-E", "aggregator=\t", "-e", "frame.comment"],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    drops = [line.split("\t") for line in r.stdout.splitlines()]
    assert len(drops) == 17
    assert all(c[1].startswith("verdict: mtu in node2 host (drop): ") for c in drops), drops
    assert len({c[0].split(" | ")[0] for c in drops}) == 1  # one request: "req #21"


def test_no_recorded_trace_gives_wireshark_false_tcp_analysis(tmp_path: Path) -> None:
    """Every bundled recording, exported, has no TCP analysis flag: the probes record no
    sequence numbers, so a mid-connection segment (the MTU fault's drops) keeps only its IP
    header instead of made-up numbers that read as duplicate ACKs."""
    traces = sorted(FAULTS.glob("*.swt")) + sorted(FAULTS.parent.glob("*.swt"))
    assert len(traces) >= 10
    for trace in traces:
        out = tmp_path / f"{trace.stem}.pcapng"
        write_pcapng(trace, out, trace_names(trace))
        assert _tshark(out, "-Y", "tcp.analysis.flags") == [], trace.name
    mid = _tshark(tmp_path / "underlay_mtu_below_the_overlay.pcapng", "-Y",
                  'frame.comment contains "IP header only (TCP flags ACK"')
    assert len(mid) >= 17


def test_a_dns_error_says_its_rcode_not_a_record_count(tmp_path: Path) -> None:
    """The swarm lab's recording of a name that does not exist: the responses without an
    address name their rcode and question, not "answer record 1 of 0"."""
    out = tmp_path / "nxdomain.pcapng"
    trace = FAULTS / "dns_name_that_does_not_exist.swt"
    write_pcapng(trace, out, trace_names(trace))
    comments = "\n".join(_tshark(out, "-T", "fields", "-e", "frame.comment"))
    assert "answer NXDOMAIN to the A question, no address" in comments
    assert " of 0" not in comments
