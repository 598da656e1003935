"""Agent and collector on loopback, fed by a recorded trace: the stream, the token, the
bounded buffer, a node dropping out and coming back, and clock alignment (pure logic: no
root, no kernel; tests/test_remote_lab.py runs the real thing on the swarm lab)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

from tracer.enrich.names import Names
from tracer.events import EVENT_DTYPE, Point, ip_to_raw, port_to_raw
from tracer.pipeline import Pipeline
from tracer.remote.agent import Agent, AgentOptions
from tracer.remote.auth import load_token, new_token
from tracer.remote.clocks import ClockAligner
from tracer.remote.collector import AgentAddr, Collector, node_netns, parse_agents
from tracer.sinks.text import summary
from tracer.source import Filter, SourceInfo, SourceStats
from tracer.tracefile.replay import ReplaySource
from tracer.tracefile.topology import trace_names

FIXTURE = Path(__file__).parent / "fixtures" / "swarm_vm_core.swt"
OFFSET_NS = 5_000_000_000  # the agent's clock, shifted by its test hook


class _Recorded:
    """A recorded trace as a live source: nothing until a collector is there, then the
    events moved to now (a live correlator closes requests by the clock)."""

    def __init__(self, path: Path, ready: threading.Event) -> None:
        self._replay = ReplaySource(path)
        self._ready = ready
        self.info = SourceInfo("core", self._replay.info.kernel, True,
                               drop_reasons=self._replay.info.drop_reasons)
        self._shift: int | None = None

    def __enter__(self) -> _Recorded:
        return self

    def __exit__(self, *exc: object) -> None:
        self._replay.close()

    @property
    def finished(self) -> bool:
        return False

    def poll(self, timeout_s: float) -> np.ndarray:
        if not self._ready.is_set() or self._replay.finished:
            time.sleep(min(timeout_s, 0.02))
            return np.empty(0, dtype=EVENT_DTYPE)
        arr = self._replay.poll(0).copy()
        if len(arr):
            if self._shift is None:
                self._shift = time.monotonic_ns() - int(arr["ts_ns"][0])
            arr["ts_ns"] += np.uint64(self._shift)
        return arr

    def stats(self) -> SourceStats:
        return SourceStats()


@pytest.fixture
def token(tmp_path: Path) -> tuple[Path, bytes]:
    path = tmp_path / "token"
    return path, new_token(path)


@contextmanager
def _agent(token: bytes, ready: threading.Event, port: int = 0, offset: int = 0,
           buffer_bytes: int = 8 << 20) -> Iterator[Agent]:
    names: Names | None = trace_names(FIXTURE)
    with _Recorded(FIXTURE, ready) as source:
        agent = Agent(AgentOptions("127.0.0.1", port, token, "node9", clock_offset_ns=offset,
                                   buffer_bytes=buffer_bytes), source, names, Filter())
        t = threading.Thread(target=agent.serve, daemon=True)
        t.start()
        try:
            yield agent
        finally:
            agent.stop()
            t.join(timeout=5)


def _requests(pipe: Pipeline, want: int, timeout_s: float = 20) -> list[str]:
    out: list[str] = []
    deadline = time.monotonic() + timeout_s
    while len(out) < want and time.monotonic() < deadline:
        out += [summary(r) for r in pipe.poll(0.1)]
    return out


def _expected() -> list[str]:
    with ReplaySource(FIXTURE) as src:
        pipe = Pipeline(src, trace_names(FIXTURE))
        out = []
        while not src.finished:
            out += [summary(r) for r in pipe.poll(0)]
        return out + [summary(r) for r in pipe.flush()]


def test_token_file_must_be_private(tmp_path: Path) -> None:
    path = tmp_path / "t"
    new_token(path)
    assert load_token(path)
    path.chmod(0o644)
    with pytest.raises(Exception, match="readable by others: chmod 600"):
        load_token(path)


def test_agents_option() -> None:
    assert parse_agents("10.0.0.1:5000, node2") == [AgentAddr("10.0.0.1", 5000),
                                                    AgentAddr("node2", 4791)]
    with pytest.raises(Exception, match="is not host:port"):
        parse_agents("a:b")


def test_stream_joins_like_the_file_and_recovers_the_clock(
        token: tuple[Path, bytes]) -> None:
    """Every request of the recorded trace comes out of the collector as replay shows it,
    named from the agent's names, with the agent's shifted clock found by pings."""
    expected = _expected()
    ready = threading.Event()
    with _agent(token[1], ready, offset=OFFSET_NS) as agent, \
            Collector([AgentAddr(*agent.address)], token[1]) as coll:
        assert coll.agents() == {"node9": True}
        ready.set()
        got = _requests(Pipeline(coll, coll.names), len(expected))
        (node, off), = coll.offsets()
        assert node == "node9" and off.source == "ping"
        assert abs(off.offset_ns - OFFSET_NS) <= off.error_ns + 1_000_000
    assert sorted(got) == sorted(expected)


def test_wrong_token_gets_nothing(token: tuple[Path, bytes], tmp_path: Path,
                                  caplog: pytest.LogCaptureFixture) -> None:
    bad = new_token(tmp_path / "other")
    ready = threading.Event()
    with caplog.at_level(logging.WARNING, logger="tracer.remote.agent_listener"), \
            _agent(token[1], ready) as agent, \
            Collector([AgentAddr(*agent.address)], bad, ready_wait_s=1) as coll:
        ready.set()
        arrived = [len(coll.poll(0.2)) for _ in range(10)]
        assert coll.agents() == {f"127.0.0.1:{agent.address[1]}": False}
        assert sum(arrived) == 0 and agent.events_sent == 0 and agent.refused >= 1
    assert any("wrong token" in r.getMessage() for r in caplog.records)


def test_slow_collector_drops_are_counted(token: tuple[Path, bytes]) -> None:
    """A collector that cannot keep up loses events, counted, and the agent reads on."""
    ready = threading.Event()
    with _agent(token[1], ready, buffer_bytes=1) as agent, \
            Collector([AgentAddr(*agent.address)], token[1]) as coll:
        ready.set()
        deadline = time.monotonic() + 10
        while coll.stats().lost < 97 and time.monotonic() < deadline:
            coll.poll(0.1)
        assert coll.stats().lost == 97  # every event of the fixture, dropped for us
        assert coll.stats().extra == {"node9 dropped": 97}


def test_missing_agent_is_named_and_comes_back(token: tuple[Path, bytes]) -> None:
    ready = threading.Event()
    with _agent(token[1], ready) as agent:
        addr = agent.address
        with Collector([AgentAddr(*addr, node="node9")], token[1]) as coll:
            assert coll.agents() == {"node9": True}
            agent.stop()
            deadline = time.monotonic() + 15
            while coll.agents()["node9"] and time.monotonic() < deadline:
                coll.poll(0.1)
            notes = coll.take_notices()
            assert notes[-1].startswith("node9: no agent, its hops are missing"), notes
            assert coll.info.notes == ("node9: no agent, its hops are missing",)
            with _agent(token[1], ready, port=addr[1]):
                deadline = time.monotonic() + 15
                while not coll.agents()["node9"] and time.monotonic() < deadline:
                    coll.poll(0.1)
                assert coll.agents() == {"node9": True}
                assert coll.take_notices()[-1].startswith("node9: agent connected")


def _vxlan(point: Point, ts: int, src: str, dst: str, inner_id: int) -> np.ndarray:
    e = np.zeros(1, dtype=EVENT_DTYPE)
    e["ts_ns"], e["point"], e["proto"], e["tcp_flags"] = ts, point, 6, 0x02
    e["pkt"]["saddr"], e["pkt"]["daddr"] = ip_to_raw(src), ip_to_raw(dst)
    e["pkt"]["dport"] = port_to_raw(4789)
    e["orig"]["saddr"], e["orig"]["daddr"] = ip_to_raw("10.0.1.5"), ip_to_raw("10.0.1.9")
    e["aux"], e["ct"] = 4097, inner_id
    return e


def test_vxlan_both_ways_recovers_the_offset() -> None:
    """Node 2 runs 250 ms ahead; delays 60-90 us one way, 40-70 us the other: the estimate
    is within its own error bar, which is about the mean one-way delay."""
    clocks = ClockAligner()
    clocks.ping(1, 0, 10, 20)
    true = 250_000_000
    rng = np.random.default_rng(1)
    for i in range(20):
        t = 1_000_000 * i
        d12, d21 = int(rng.integers(60_000, 90_000)), int(rng.integers(40_000, 70_000))
        clocks.vxlan(1, _vxlan(Point.VXLAN_OUT, t, "192.168.199.1", "192.168.199.2", i))
        clocks.vxlan(2, _vxlan(Point.VXLAN_IN, t + d12 + true, "192.168.199.1",
                               "192.168.199.2", i))
        clocks.vxlan(2, _vxlan(Point.VXLAN_OUT, t + 500_000 + true, "192.168.199.2",
                               "192.168.199.1", 1000 + i))
        clocks.vxlan(1, _vxlan(Point.VXLAN_IN, t + 500_000 + d21, "192.168.199.2",
                               "192.168.199.1", 1000 + i))
    off = clocks.offset(2, [1, 2])
    assert off is not None and off.source == "vxlan" and off.reference == 1
    assert abs(off.offset_ns - (true + 10)) <= off.error_ns <= 80_000


def test_remote_netns_numbers_stay_apart() -> None:
    root = 0xF0000000
    assert node_netns(1, root) != node_netns(2, root)
    assert node_netns(1, root + 5) != node_netns(1, root + 6)
    assert node_netns(3, 0) == 0


def test_one_way_packets_keep_the_ping_estimate_causal() -> None:
    """Pings put node 2 300 us later than it is; one packet node1 -> node2 that took 30 us
    then pulls the estimate back so that it does not arrive before it left."""
    clocks = ClockAligner()
    clocks.ping(1, 0, 0, 0)
    clocks.ping(2, 0, 300_000, 0)  # node 2's clock really equals node 1's
    clocks.vxlan(1, _vxlan(Point.VXLAN_OUT, 1_000_000, "192.168.199.1", "192.168.199.2", 7))
    clocks.vxlan(2, _vxlan(Point.VXLAN_IN, 1_030_000, "192.168.199.1", "192.168.199.2", 7))
    off = clocks.offset(2, [1, 2])
    assert off is not None and off.source == "ping+vxlan"
    assert off.relative_ns == 30_000  # at most the measured one-way time
    assert 1_030_000 - off.offset_ns >= 1_000_000


def test_tui_status_bar_names_the_missing_node(token: tuple[Path, bytes]) -> None:
    """`tui --swarm`: the status bar says which node lost its agent, while it is lost."""
    import asyncio

    from tracer.tui.app import SwarmtraceApp
    from tracer.tui.pipeline_feed import PipelineFeed
    from tracer.tui.widgets.status_bar import StatusBar

    async def run(coll: Collector, agent: Agent) -> None:
        app = SwarmtraceApp(PipelineFeed(Pipeline(coll, coll.names)))
        async with app.run_test(size=(120, 30)) as pilot:
            bar = app.screen.query_one(StatusBar)
            await pilot.pause(0.5)
            assert "no agent" not in str(bar.render())
            agent.stop()
            for _ in range(100):
                await pilot.pause(0.1)
                if "node9: no agent, its hops are missing" in str(bar.render()):
                    break
            assert "node9: no agent, its hops are missing" in str(bar.render())

    ready = threading.Event()
    with _agent(token[1], ready) as agent, \
            Collector([AgentAddr(*agent.address, node="node9")], token[1]) as coll:
        asyncio.run(run(coll, agent))
