"""The nftables trace reader on events the real kernel sent (recorded from the NFNLGRP_NFTRACE
group of the netns lab's host, with the trace table of ruleset() and the docker-user-drop and
forward-policy-drop faults of tests/test_faults_lab.py), the trace table, and bad input."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tracer.diagnose.nftrace import TraceDrop, parse, ruleset
from tracer.source import Filter

# One recv() buffer a line, hex: a SYN and its retransmit dropped by a DOCKER-USER rule
# (handle 4), then two dropped by FORWARD policy DROP; every other trace event of them too.
FIXTURE = Path(__file__).parent / "fixtures" / "nftrace" / "lab_drops.hex"


def test_drops_parsed_from_recorded_trace_events() -> None:
    flows: dict[int, str] = {}
    drops = [d for line in FIXTURE.read_text().split()
             for d in parse(bytes.fromhex(line), 7, 1, flows)]
    assert [(d.netns, d.family, d.table, d.chain, d.handle) for d in drops] == \
        [(7, "ip", "filter", "DOCKER-USER", 4)] * 2 + [(7, "ip", "filter", "FORWARD", 0)] * 2
    # The headers come with a packet's first event at the hook only; the drop gets them by id.
    assert drops[0] == TraceDrop(7, 1, "ip", "filter", "DOCKER-USER", 4,
                                 "tcp 192.168.100.2:48518 > 172.18.0.2:8080")


def test_truncated_or_foreign_messages_are_skipped() -> None:
    line = FIXTURE.read_text().split()[6]
    raw = bytes.fromhex(line)
    assert parse(raw, 1, 0, {})  # the DOCKER-USER drop
    for cut in range(0, len(raw), 7):
        parse(raw[:cut], 1, 0, {})  # never raises
    assert parse(b"\x14\0\0\0\x02\0" + bytes(14), 1, 0, {}) == []  # an NLMSG_ERROR


def test_trace_table_marks_only_the_watched_flows() -> None:
    text = ruleset(Filter(ports=(8080, 53), addrs=("10.0.0.9",)), "swarmtrace_42")
    assert text.startswith("table ip swarmtrace_42 {")
    for hook in ("prerouting", "output"):
        assert f"type filter hook {hook} priority -350; policy accept;" in text
    assert text.count("tcp dport { 8080, 53 } meta nftrace set 1") == 2
    assert text.count("ip daddr { 10.0.0.9 } meta nftrace set 1") == 2


def test_nftrace_without_a_flow_is_refused_before_attaching() -> None:
    res = subprocess.run([sys.executable, "-m", "tracer", "trace", "--nftrace"],
                         capture_output=True, text=True, timeout=60, check=False)
    assert res.returncode == 2
    assert res.stderr.strip().splitlines()[-1].endswith(
        "--nftrace traces the watched flows only: give --port, --addr or --service")
    assert len(res.stderr.strip().splitlines()) == 1
