"""The annotator keeps names across requests only while they hold at every time: a renamed
netns, a mark that comes to mean another service, a task replaced at the same address are
named as of each hop's time again once the names history changes."""

from __future__ import annotations

from tracer.enrich.annotate import Annotator
from tracer.enrich.history import RANK_DOCKER, NameHistory, RecordedNames
from tracer.enrich.names import AddrName, NetnsName
from tracer.enrich.topology import Topology
from tracer.events import Flow
from tracer.model import Hop, HopKind, Request

SBOX, TASK_NS = 11, 12
BACKEND = "10.0.0.5"


def _topology(service: str, task: str, sbox: str) -> Topology:
    return Topology(netns={SBOX: NetnsName(sbox, "ingress_sbox", node="node1"),
                           TASK_NS: NetnsName("t", "container", node="node1")},
                    addrs={BACKEND: AddrName("task", task=task, service=service,
                                             node="node1")},
                    lb_index={("node1", 0x105): service})


def _request(ts: int) -> Request:
    hops = [Hop(HopKind.MARK, ts, SBOX, f"netns:{SBOX}", mark=0x105),
            Hop(HopKind.DELIVER, ts + 1, TASK_NS, f"netns:{TASK_NS}")]
    return Request(1, "tcp", Flow("10.0.0.2", 1, "10.0.0.9", 80), ts, hops,
                   backend_addr=f"{BACKEND}:80")


def _named(ann: Annotator, ts: int) -> tuple[str, str, str]:
    r = ann.annotate(_request(ts))
    return r.hops[0].where, r.hops[0].detail, r.backend_name


def test_names_follow_changes_after_being_kept() -> None:
    history = NameHistory()
    history.observe("docker:node1", _topology("vote", "vote.1.aaaaaaa", "ingress_sbox"),
                    0, RANK_DOCKER)
    ann = Annotator(RecordedNames(history))
    before = ("node1 ingress_sbox", "service vote (fwmark 261)", "vote.1.aaaa on node1")
    assert _named(ann, 100) == before
    assert _named(ann, 200) == before  # from what was kept
    # At 1000 the mark means another service, the address another task, the netns another name.
    history.observe("docker:node1", _topology("web", "web.2.bbbbbbb", "ingress_sbox2"),
                    1000, RANK_DOCKER)
    assert _named(ann, 2000) == ("node1 ingress_sbox2", "service web (fwmark 261)",
                                 "web.2.bbbb on node1")
    assert _named(ann, 300) == before  # each hop as of its own time
    assert _named(ann, 3000)[1] == "service web (fwmark 261)"
