"""Pilot tests for every TUI interaction, fed from recorded-shape Requests (no kernel needed)."""

from __future__ import annotations

import asyncio
import functools
import io
import json
import subprocess
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest

from tracer.model import HopKind, Request, Status
from tracer.sinks.narrate import narrate
from tracer.source import SourceInfo
from tracer.tui.app import SwarmtraceApp
from tracer.tui.feed import FeedBatch, ListFeed
from tracer.tui.path_render import Palette
from tracer.tui.request_json import load_requests, request_from_json
from tracer.tui.screens.requests import RequestsScreen
from tracer.tui.screens.talk import TalkScreen
from tracer.tui.store import RequestStore
from tracer.tui.widgets.hop_path import HopPath
from tracer.tui.widgets.status_bar import StatusBar

FIXTURES = Path(__file__).parent / "fixtures"
LAB = FIXTURES / "requests_sample.json"
SWARM = FIXTURES / "requests_swarm.json"
INFO = SourceInfo(backend="replay", kernel="6.18.0", live=False, notes=("IPVS stand-in",))
SIZE = (100, 30)


def sync(test: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., None]:
    """Run an async Pilot test on a fresh event loop (no pytest asyncio plugin needed)."""

    @functools.wraps(test)
    def run(*args: Any, **kwargs: Any) -> None:
        asyncio.run(test(*args, **kwargs))

    return run


def feed_of(path: Path, **kw: Any) -> ListFeed:
    requests, topology = load_requests(path)
    return ListFeed(requests, info=INFO, topology=topology, **kw)


class LiveListFeed:
    """A feed without replay controls, like live probes: pausing must not lose requests."""

    def __init__(self, requests: list[Request]) -> None:
        self._inner = ListFeed(requests, info=SourceInfo("core", "6.18.0", True))
        self.queue: list[Request] = []

    def poll(self, timeout_s: float) -> FeedBatch:
        batch = self._inner.poll(timeout_s)
        out, self.queue = tuple(self.queue), []
        return FeedBatch(stats=batch.stats, requests=batch.requests + out)

    @property
    def finished(self) -> bool:
        return False


async def settle(pilot: Any, app: SwarmtraceApp, count: int | None = None) -> None:
    """Wait until the feed has delivered (count requests, or the whole trace)."""
    for _ in range(100):
        done = app.state.finished if count is None else app.state.store.total >= count
        if done:
            break
        await pilot.pause(0.05)
    await pilot.pause()


def requests_screen(app: SwarmtraceApp) -> RequestsScreen:
    assert isinstance(app.screen, RequestsScreen)
    return app.screen


def status_line(app: SwarmtraceApp) -> str:
    return str(app.screen.query_one(StatusBar).render())


# -- the JSON loader --------------------------------------------------------------------------


@pytest.mark.parametrize("path", [LAB, SWARM])
def test_request_json_round_trip(path: Path) -> None:
    data = json.loads(path.read_text())
    for d in data["requests"]:
        assert request_from_json(d).to_json() == d


def test_request_json_rejects_other_versions() -> None:
    d = json.loads(LAB.read_text())["requests"][0] | {"v": 99}
    with pytest.raises(ValueError, match="version 99"):
        request_from_json(d)


# -- the store ----------------------------------------------------------------------------------


def test_store_is_bounded_and_keeps_filter_consistent() -> None:
    requests, _ = load_requests(LAB)
    store = RequestStore(capacity=5)
    store.set_query("backend-1")
    store.apply(requests)
    assert store.total == 5 and store.seen == len(requests)
    assert all(r.backend_name == "backend-1" for r in store.window(0, len(store)))
    assert {r.id for r in store.window(0, len(store))} <= {r.id for r in requests[-5:]}


def test_store_update_keeps_place_and_recounts() -> None:
    requests, _ = load_requests(LAB)
    store = RequestStore()
    store.apply(requests)
    first = requests[0]
    dropped = Request(
        **{**{f: getattr(first, f) for f in first.__slots__}, "status": Status.DROPPED}
    )  # type: ignore[attr-defined]
    before = store.services["port 8080"].tasks["backend-1"].dropped
    store.apply([dropped])
    assert store.at(0) is dropped and store.total == len(requests)
    assert store.services["port 8080"].tasks["backend-1"].dropped == before + 1


def test_filter_keys() -> None:
    requests, _ = load_requests(SWARM)
    store = RequestStore()
    store.apply(requests)
    store.set_query("mode:dnsrr")
    assert len(store) == 5
    store.set_query("service:vote node:node2 mode:vip")
    assert len(store) and all(r.mode == "vip" for r in store.window(0, len(store)))
    store.set_query("")
    assert len(store) == len(requests)


# -- the feed ----------------------------------------------------------------------------------


def test_list_feed_paced_step_and_seek() -> None:
    requests, _ = load_requests(LAB)
    feed = ListFeed(requests, info=INFO, paced=True, speed=1.0)
    feed.set_paused(True)
    assert [r.id for r in feed.poll(0.05).requests] == [requests[0].id]  # due at time 0
    assert feed.poll(0.05).requests == ()
    feed.step()
    assert [r.id for r in feed.poll(0.05).requests] == [requests[1].id]
    feed.seek(60)  # past the end: everything is due
    feed.set_paused(False)
    assert len(feed.poll(0.05).requests) == len(requests) - 2
    assert feed.finished


# -- the app: list, path, follow, mouse ------------------------------------------------------


@sync
async def test_list_follows_newest_and_shows_its_path() -> None:
    app = SwarmtraceApp(feed_of(LAB))
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, app)
        screen = requests_screen(app)
        lst = screen.request_list
        assert len(app.state.store) == 16
        assert lst.cursor == 15 and app.state.follow
        path = screen.query_one(HopPath)
        assert path.request is not None and path.request.id == lst.selected.id  # type: ignore[union-attr]
        assert "16 req" in status_line(app) and "REPLAY" in status_line(app)
        assert "IPVS stand-in" in status_line(app)


@sync
async def test_cursor_keys_and_mouse_select() -> None:
    app = SwarmtraceApp(feed_of(LAB))
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, app)
        screen = requests_screen(app)
        lst = screen.request_list
        await pilot.press("up", "up")
        assert lst.cursor == 13 and not app.state.follow
        await pilot.press("home")
        assert lst.cursor == 0
        assert screen.query_one(HopPath).request is app.state.store.at(0)
        await pilot.click("#requests", offset=(10, 4))  # line 0 is the header
        await pilot.pause()
        assert lst.cursor == 3
        assert screen.query_one(HopPath).request is app.state.store.at(3)
        await pilot.press("end")
        assert lst.cursor == 15 and app.state.follow


@sync
async def test_follow_toggle_keeps_cursor_on_new_requests() -> None:
    requests, _ = load_requests(LAB)
    feed = LiveListFeed(requests[:8])
    app = SwarmtraceApp(feed)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, app, 8)
        lst = requests_screen(app).request_list
        await pilot.press("f")
        assert not app.state.follow
        await pilot.press("home")
        feed.queue.extend(requests[8:])
        await settle(pilot, app, 16)
        assert lst.cursor == 0
        await pilot.press("f")
        assert app.state.follow and lst.cursor == 15
        assert "follow" in status_line(app)


@sync
async def test_next_drop_jumps_and_draws_the_drop() -> None:
    app = SwarmtraceApp(feed_of(LAB))
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, app)
        await pilot.press("home", "n")
        screen = requests_screen(app)
        selected = screen.request_list.selected
        assert selected is not None and selected.status is Status.DROPPED
        drawing = screen.query_one(HopPath).drawing
        assert drawing is not None and "DROPPED: NETFILTER_DROP" in drawing.text().plain
        await pilot.press("n")  # the only drop: wraps around to itself
        assert screen.request_list.selected is selected


# -- filter as you type ------------------------------------------------------------------------


@sync
async def test_filter_as_you_type_enter_and_escape() -> None:
    app = SwarmtraceApp(feed_of(LAB))
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, app)
        await pilot.press("slash", *"backend-2")
        await pilot.pause(0.2)
        store = app.state.store
        expected = sum(r.backend_name == "backend-2" for r in load_requests(LAB)[0])
        assert len(store) == expected
        assert all(r.backend_name == "backend-2" for r in store.window(0, expected))
        assert "filter backend-2" in status_line(app)
        await pilot.press("enter")
        assert app.focused is requests_screen(app).request_list
        assert len(store) == expected
        await pilot.press("slash", "backspace", *"1", "enter")
        assert all(r.backend_name == "backend-1" for r in store.window(0, len(store)))
        await pilot.press("escape")
        assert len(store) == 16 and store.query_text == ""


@sync
async def test_filter_by_status_key() -> None:
    app = SwarmtraceApp(feed_of(LAB))
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, app)
        await pilot.press("slash", *"status:dropped", "enter")
        assert len(app.state.store) == 1
        assert app.state.store.at(0).status is Status.DROPPED


# -- pause, replay controls --------------------------------------------------------------------


@sync
async def test_pause_live_feed_holds_requests_until_resume() -> None:
    requests, _ = load_requests(LAB)
    feed = LiveListFeed(requests[:4])
    app = SwarmtraceApp(feed)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, app, 4)
        await pilot.press("space")
        assert app.state.paused and "PAUSED" in status_line(app)
        feed.queue.extend(requests[4:])
        await pilot.pause(0.4)
        assert app.state.store.total == 4  # held back, not lost
        await pilot.press("space")
        assert not app.state.paused and app.state.store.total == 16


@sync
async def test_replay_speed_seek_step() -> None:
    feed = feed_of(LAB, paced=True)
    app = SwarmtraceApp(feed)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("space")  # pause the replay clock itself
        assert app.state.paused
        # Requests released before the pause may still be on their way to the app.
        n = feed.released
        await settle(pilot, app, n)
        assert app.state.store.total == n
        await pilot.press("plus")
        assert feed.speed == 2.0 and "2x" in status_line(app)
        await pilot.press("minus", "minus")
        assert feed.speed == 0.5
        await pilot.press("full_stop")
        await settle(pilot, app, n + 1)
        assert app.state.store.total == n + 1
        await pilot.press("greater_than_sign", "space")
        await settle(pilot, app)
        assert app.state.store.total == 16


@sync
async def test_replay_keys_hidden_for_live_feeds() -> None:
    requests, _ = load_requests(LAB)
    app = SwarmtraceApp(LiveListFeed(requests))
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, app, 16)
        assert app.check_action("speed", (1,)) is False
        await pilot.press("plus")  # nothing happens, nothing breaks
        assert app.state.speed is None


# -- other screens ------------------------------------------------------------------------------


@sync
async def test_services_screen_bars_and_keepalive_note() -> None:
    app = SwarmtraceApp(feed_of(SWARM))
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, app)
        await pilot.press("2")
        assert app.current_mode == "services"
        text = str(app.screen.query_one("#services").render())
        assert "vote.1.7iiu" in text and "vote.2.uyhx" in text and "█" in text
        assert "stayed open 12.4 s" in text
        assert "14 connections over 2 tasks" in text


@sync
async def test_topology_screen_draws_nodes_sandboxes_and_tasks() -> None:
    app = SwarmtraceApp(feed_of(SWARM))
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, app)
        await pilot.press("3")
        from rich.console import Console

        from tracer.tui.widgets.topology_picture import TopologyPicture, picture

        shown = app.screen.query_one(TopologyPicture)
        console = Console(width=98, record=True, file=io.StringIO())
        console.print(picture(shown.snapshot, 98, Palette()))
        text = console.export_text()
        assert "node node1" in text and "node node2" in text
        assert "ingress_sbox" in text and "IPVS FWM 261 rr" in text
        assert "vote.2.uyhx" in text and "10.0.0.9 (overlay1)" in text
        assert "4026532601" not in text  # no inode numbers
        await pilot.press("1")
        assert app.current_mode == "requests"


def test_topology_of_the_sample_names_each_netns_once() -> None:
    from tracer.commands.replay import sample_path
    from tracer.tracefile.topology import trace_names
    from tracer.tui.topology_model import topology_of

    names = trace_names(sample_path())
    assert names is not None
    t = topology_of(names.snapshot())
    assert sorted(t.nodes) == ["node1", "node2"]
    node1 = t.nodes["node1"]
    assert {"host", "ingress_sbox", "lb_overlay1", "vote-vip.2.829k"} <= set(node1)
    assert "192.168.199.1" in node1["host"].addrs
    assert "192.168.199.1" not in t.nodes["node2"]["host"].addrs
    assert t.services["vote-vip"].vips == {"ingress": "10.0.0.4", "overlay1": "10.0.1.7"}


@sync
async def test_theme_toggle() -> None:
    app = SwarmtraceApp(feed_of(LAB))
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, app)
        assert app.theme == "textual-dark"
        await pilot.press("d")
        assert app.theme == "textual-light"
        await pilot.press("d")
        assert app.theme == "textual-dark"
        # Every screen follows, also those restyled while another one was shown.
        await pilot.press("d", "2")
        await pilot.pause()
        light = app.get_theme("textual-light")
        assert light is not None and light.background is not None
        assert app.screen.styles.background.hex6.lower() == light.background.lower()


# -- talk mode ----------------------------------------------------------------------------------


@sync
async def test_talk_mode_steps_hop_by_hop() -> None:
    app = SwarmtraceApp(feed_of(SWARM), step=True)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, app)
        talk = app.screen
        assert isinstance(talk, TalkScreen) and talk.index == 0 and talk.hop == 0
        r = talk.request
        assert r is not None
        for i in range(1, 6):
            await pilot.press("right")
            assert talk.hop == i
            assert str(talk.query_one("#sentence").render()) == narrate(r, i)
        assert talk.query_one(HopPath).highlight == 5
        assert (
            "IPVS in ingress_sbox on node1, fwmark 261, round robin, chose vote.2.uyhx on node2"
            in narrate(r, 5)
        )
        await pilot.press("left")
        assert talk.hop == 4
        for _ in range(len(r.hops) - 4):
            await pilot.press("right")
        assert talk.index == 1 and talk.hop == 0  # past the last hop: the next request
        await pilot.press("down")
        assert talk.index == 2
        await pilot.press("up", "up", "up")
        assert talk.index == 0


@sync
async def test_talk_mode_from_selected_request_and_stand_in_sentence() -> None:
    app = SwarmtraceApp(feed_of(LAB))
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, app)
        await pilot.press("home", "down")
        selected = requests_screen(app).request_list.selected
        await pilot.press("t")
        talk = app.screen
        assert isinstance(talk, TalkScreen) and talk.request is selected
        lb = next(i for i, h in enumerate(selected.hops) if h.kind is HopKind.LB)  # type: ignore[union-attr]
        for _ in range(lb):
            await pilot.press("right")
        sentence = str(talk.query_one("#sentence").render())
        assert sentence.startswith(
            "iptables round-robin DNAT (IPVS stand-in) in ingress_sbox chose backend-2"
        )


# -- command palette ---------------------------------------------------------------------------


@sync
async def test_command_palette_filters_by_task() -> None:
    app = SwarmtraceApp(feed_of(SWARM))
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, app)
        await pilot.press("ctrl+p")
        await pilot.press(*"Filter task vote.2")
        await pilot.pause(0.5)
        await pilot.press("enter")
        await pilot.pause(0.3)
        assert app.state.store.query_text == "task:vote.2.uyhx"
        assert all(r.backend_name == "vote.2.uyhx" for r in app.state.store.window(0, 99))


@sync
async def test_command_palette_jump_to_drop_from_talk() -> None:
    app = SwarmtraceApp(feed_of(LAB), step=True)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, app)
        await pilot.press("ctrl+p", *"next drop")
        await pilot.pause(0.5)
        await pilot.press("enter")
        await pilot.pause(0.3)
        assert app.current_mode == "requests"
        selected = requests_screen(app).request_list.selected
        assert selected is not None and selected.status is Status.DROPPED


def test_bindings_have_ids() -> None:
    from tracer.tui.screens.talk import TalkScreen as Talk
    from tracer.tui.widgets.request_list import RequestList

    for owner in (SwarmtraceApp, RequestsScreen, Talk, RequestList):
        for b in owner.BINDINGS:
            assert getattr(b, "id", None), f"{owner.__name__}: {b}"


# -- architecture ------------------------------------------------------------------------------


def test_tui_imports_no_bpf_and_cli_imports_no_textual() -> None:
    code = (
        "import sys, tracer.tui.app, tracer.tui.request_json\n"
        "bad = [m for m in sys.modules\n"
        "       if m == 'bcc' or m.startswith(('tracer.probes', 'tracer.bpf'))]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
    code = (
        "import sys, tracer.cli\n"
        "tracer.cli.build_parser()\n"
        "assert 'textual' not in sys.modules, 'the CLI must load Textual only to show a TUI'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# -- a real trace file, replayed through the real pipeline -----------------------------------


@sync
async def test_replayed_trace_file_in_the_tui(tmp_path: Path) -> None:
    from tracer.pipeline import Pipeline
    from tracer.tracefile.format import TraceHeader
    from tracer.tracefile.replay import ReplaySource
    from tracer.tracefile.synthetic import mesh_events
    from tracer.tracefile.topology import trace_names
    from tracer.tracefile.writer import TraceWriter
    from tracer.tui.pipeline_feed import replay_feed

    path = tmp_path / "mesh.swt"
    header = TraceHeader.now(SourceInfo("core", "6.18", True), lb_note="IPVS stand-in")
    with TraceWriter(path, header) as w:
        w.events(mesh_events(30))
    with ReplaySource(path) as source:
        feed = replay_feed(Pipeline(source, trace_names(path), header.lb_note), speed=64.0)
    app = SwarmtraceApp(feed)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, app)
        store = app.state.store
        assert store.total == 30
        assert {r.backend_addr for r in store.window(0, 30)} == {"10.255.0.5:80", "10.255.0.6:80"}
        await pilot.press("2")
        text = str(app.screen.query_one("#services").render())
        assert "10.255.0.5:80" in text and "15  50%" in text


@sync
async def test_filter_runs_in_slices_for_big_lists(monkeypatch: pytest.MonkeyPatch) -> None:
    import tracer.tui.screens.requests as requests_module

    monkeypatch.setattr(requests_module, "INLINE_FILTER", 0)  # every filter runs in slices
    app = SwarmtraceApp(feed_of(LAB))
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, app)
        await pilot.press("slash", *"status:refused", "enter")
        for _ in range(40):
            if app.state.store.query_text == "status:refused":
                break
            await pilot.pause(0.05)
        assert len(app.state.store) == 1
        assert app.state.store.at(0).status is Status.REFUSED
        await pilot.press("escape")
        for _ in range(40):
            if len(app.state.store) == 16:
                break
            await pilot.pause(0.05)
        assert len(app.state.store) == 16


def test_tui_command_without_root_is_one_line_error(tmp_path: Path) -> None:
    """No root, no BPF: the probe's one-line error and its exit code, no traceback."""
    import os

    cmd = [sys.executable, "-m", "tracer", "tui", "--port", "8080"]
    if os.geteuid() == 0:
        if not Path("/usr/bin/setpriv").exists():
            pytest.skip("needs setpriv to drop root")
        cmd = ["/usr/bin/setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *cmd]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=60, cwd=tmp_path,
                         env={**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent)})
    assert out.returncode != 0
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("swarmtrace: "), out.stderr
    assert "Traceback" not in out.stderr


@sync
async def test_request_updated_in_place_is_redrawn() -> None:
    """The correlator may complete the very Request object it showed as open."""
    requests, _ = load_requests(LAB)
    live = requests[0]
    hops, reply = live.hops, live.reply_ns
    live.hops, live.status, live.reply_ns = hops[:5], Status.OPEN, 0
    feed = LiveListFeed([live])
    app = SwarmtraceApp(feed)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, app, 1)
        screen = requests_screen(app)
        lst = screen.request_list
        assert "open" in lst.render_line(1).text
        version = app.state.store.version
        live.hops, live.status, live.reply_ns = hops, Status.OK, reply
        feed.queue.append(live)
        for _ in range(40):
            await pilot.pause(0.05)
            if app.state.store.version != version:
                break
        await pilot.pause()
        assert "ok" in lst.render_line(1).text
        drawing = screen.query_one(HopPath).drawing
        assert drawing is not None and "reply" in drawing.text().plain


@sync
async def test_frame_after_a_key_is_not_held_back_by_the_frame_cap() -> None:
    """Frames right after a key are painted at once; other repaints keep the cap."""
    import time

    from textual.app import App

    from tracer.tui.frame_pacer import FramePacer

    ticks: list[float] = []
    ticked = asyncio.Event()
    input_at = [0.0]

    def tick() -> None:
        pacer.pause()  # as Screen._on_timer_update does
        ticks.append(time.monotonic())
        ticked.set()

    async def next_tick() -> None:
        ticked.clear()
        pacer.resume()
        await asyncio.wait_for(ticked.wait(), timeout=5)

    app: App[None] = App()
    async with app.run_test():
        # An hour between frames: only a key can bring the second one within the timeout.
        pacer = FramePacer(app, 3600.0, tick, lambda: input_at[0])
        pacer._start()
        try:
            await next_tick()  # the first frame: none before it
            input_at[0] = time.monotonic()
            await next_tick()
            assert len(ticks) == 2
            input_at[0] = time.monotonic() - 1.0  # the last key a second ago
            ticked.clear()
            pacer.resume()  # a repaint for the feed: it waits for the cap
            await asyncio.sleep(0.2)
            assert not ticked.is_set()
        finally:
            pacer.stop()


@sync
async def test_key_bar_fits_narrow_terminals_keeping_help_and_quit() -> None:
    """At 80 columns and less the line drops keys instead of being cut: help and quit stay,
    the palette hint goes first, then the replay keys, then the screen's own from the end."""
    from tracer.tui.widgets.key_bar import KeyBar

    app = SwarmtraceApp(feed_of(LAB))
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot, app)
        bars: dict[tuple[str, int], str] = {}
        for screen_key in ("1", "t"):
            await pilot.press(screen_key)
            for width in (160, 80, 50):
                await pilot.resize_terminal(width, 24)
                await pilot.pause()
                bars[screen_key, width] = app.screen.query_one(KeyBar).render().plain
    for (_, width), bar in bars.items():
        assert len(bar) <= width and "? help" in bar and "q quit" in bar, (width, bar)
    assert "^p palette" in bars["1", 160] and ". step" in bars["1", 160]
    assert "^p palette" not in bars["1", 80] and ". step" not in bars["1", 80]
    assert "n drop" in bars["1", 80]  # the screen's own keys before the app's replay keys
    assert "→← hop" in bars["t", 50] and "p present" not in bars["t", 50]
