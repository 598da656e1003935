"""Pilot tests for the speaker's and newcomer's controls (issue 15): playback status, rewind,
restart, go to, help, talk-mode pacing, hop path focus, list height, columns, filters."""

from __future__ import annotations

import os
import pty
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.test_tui import feed_of, sync
from tracer.model import HopKind
from tracer.source import SourceInfo
from tracer.tui.app import SwarmtraceApp
from tracer.tui.columns import fit_columns
from tracer.tui.feed import FeedStats, ListFeed
from tracer.tui.request_json import load_requests
from tracer.tui.screens.dialogs import GotoScreen, HelpScreen
from tracer.tui.screens.requests import RequestsScreen
from tracer.tui.screens.talk import TalkScreen
from tracer.tui.store import RequestStore
from tracer.tui.widgets.hop_path import HopPath
from tracer.tui.widgets.status_bar import StatusState, status_text

FIXTURES = Path(__file__).parent / "fixtures"
LAB = FIXTURES / "requests_sample.json"
SWARM = FIXTURES / "requests_swarm.json"
INFO = SourceInfo("replay", "6.1.0-56-amd64", False,
                  notes=("recorded by bcc on node1, node2", "sample: a real 2-node Docker Swarm"))
ROOT = Path(__file__).resolve().parents[1]


async def until(pilot: Any, check: Callable[[], bool], what: str) -> None:
    for _ in range(200):
        if check():
            return
        await pilot.pause(0.02)
    raise AssertionError(f"timed out waiting for {what}")


# -- status bar -------------------------------------------------------------------------------


def test_playback_part_fits_in_160_columns() -> None:
    stats = FeedStats(source=INFO, position_s=14.0, duration_s=14.0, lost=0,
                      filters="port 8080, port 80, port 53")
    st = StatusState(stats=stats, requests=30, shown=30, query="", paused=False, follow=True,
                     finished=True, speed=2.0)
    head = status_text(st).plain[:160]
    for words in ("REPLAY", "2x", "00:14/00:14", "end of trace", "follow", "30 req"):
        assert words in head, head
    assert status_text(st).plain.index("end of trace") < 60


def test_damage_has_a_slot_in_the_status_bar() -> None:
    stats = FeedStats(source=INFO, damage="cut short after 120 events")
    st = StatusState(stats=stats, requests=1, shown=1, query="", paused=False, follow=True,
                     finished=False, speed=1.0)
    assert "damaged: cut short after 120 events" in status_text(st).plain


# -- rewind, restart, go to, help ------------------------------------------------------------


@sync
async def test_rewind_after_the_end_and_restart_from_start() -> None:
    feed = feed_of(LAB, paced=True, speed=1.0)
    app = SwarmtraceApp(feed)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press(*["greater_than_sign"] * 30)  # to the end of the trace
        await until(pilot, lambda: app.state.finished, "the end of the replay")
        assert "end of trace" in str(app.screen.query_one("#status").render())
        await pilot.press("less_than_sign")
        assert not app.state.finished and not feed.finished  # 10 s before the end, running
        # A rewind shows the list as it was then: what came later is gone and comes again.
        await pilot.pause(0.2)
        assert 0 < app.state.store.total < 16
        assert "end of trace" not in str(app.screen.query_one("#status").render())
        await pilot.press(*["greater_than_sign"] * 3)
        await until(pilot, lambda: app.state.finished, "the end again")
        assert app.state.store.total == 16
        await pilot.press("R")
        assert app.state.store.total < 16 and not app.state.finished
        await pilot.press(*["greater_than_sign"] * 30)
        await until(pilot, lambda: app.state.store.total == 16, "the replay from the start")


@sync
async def test_go_to_request_and_help() -> None:
    app = SwarmtraceApp(feed_of(LAB))
    async with app.run_test(size=(100, 30)) as pilot:
        await until(pilot, lambda: app.state.finished, "the fixture")
        await pilot.press("colon")
        assert isinstance(app.screen, GotoScreen)
        target = app.state.store.at(4).id
        await pilot.press(*str(target), "enter")
        await pilot.pause(0.1)
        screen = app.screen
        assert isinstance(screen, RequestsScreen)
        assert screen.request_list.selected is not None
        assert screen.request_list.selected.id == target and not app.state.follow
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        assert app.screen.replay is True  # a list feed can be paced: its keys are explained
        await pilot.press("escape")
        assert isinstance(app.screen, RequestsScreen)
        await pilot.press("f1")
        assert isinstance(app.screen, HelpScreen)
        await pilot.press("escape")


async def palette_shows(pilot: Any, typed: str) -> list[str]:
    """Open the palette, type, and return the entries as a user reads them."""
    from textual.command import CommandList

    await pilot.press("ctrl+p")
    await pilot.press(*typed)
    shown: list[str] = []

    def listed() -> bool:
        options = pilot.app.screen.query_one(CommandList)
        shown[:] = [str(options.get_option_at_index(i).prompt).splitlines()[0]
                    for i in range(options.option_count)]
        return bool(shown)

    await until(pilot, listed, f"the palette to list {typed!r}")
    await pilot.press("escape")
    return shown


@sync
async def test_palette_offers_replay_controls_with_their_keys() -> None:
    app = SwarmtraceApp(feed_of(LAB, paced=True, speed=64.0))
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause()
        # What a speaker types, and the key each entry teaches (keys read as text, not markup:
        # `[R]` and `[d]` are styles to Textual's markup).
        wanted_by_typed = {
            "speed": ["Speed up the replay  [+]", "Slow the replay down  [-]"],
            "seek": ["Seek 10 s back  [<]"],
            "step": ["Step one request  [.]"],
            "restart": ["Replay from the start  [R]"],
            "go to": ["Go to request #N  [:]"],
            "help": ["Help: every key  [?]"],
            "talk": ["Talk mode  [t]"],
            "dark": ["Toggle dark / light theme  [d]"],
            "follow": ["Follow newest  [f]"],
        }
        for typed, wanted in wanted_by_typed.items():
            shown = await palette_shows(pilot, typed)
            for entry in wanted:
                assert entry in shown, (typed, shown)


def test_help_lists_every_key_a_speaker_needs() -> None:
    import io

    from rich.console import Console

    from tracer.tui.screens.dialogs import help_table

    console = Console(width=100, record=True, file=io.StringIO())
    console.print(help_table(replay=True))
    text = console.export_text()
    for words in ("go to request #N", "replay from the start", "10 s back / forward",
                  "first / last request", "focus the hop path", "advance by itself"):
        assert words in text


# -- talk mode ---------------------------------------------------------------------------------


@sync
async def test_talk_mode_home_end_and_speaker_pacing() -> None:
    feed = feed_of(SWARM, paced=True, speed=1.0)
    app = SwarmtraceApp(feed, step=True)
    async with app.run_test(size=(100, 30)) as pilot:
        await until(pilot, lambda: app.state.store.total >= 1, "the first request")
        talk = app.screen
        assert isinstance(talk, TalkScreen)
        assert app.state.paused  # the speaker sets the pace, not the recording's clock
        n = app.state.store.total
        await pilot.press("end")
        assert talk.index == n - 1
        r = talk.request
        assert r is not None
        for _ in range(len(r.hops)):
            await pilot.press("right")  # past the last hop of the newest request
        await until(pilot, lambda: app.state.store.total == n + 1, "the next request")
        await until(pilot, lambda: talk.index == n, "talk mode to move to it")
        assert talk.hop == 0
        await pilot.press("home")
        assert talk.index == 0 and talk.hop == 0


@sync
async def test_talk_mode_pace_follows_the_speed_and_a_rewind_keeps_the_place() -> None:
    from tests.test_narrate import sample

    feed = ListFeed(list(sample()), info=INFO, paced=True, speed=1.0)  # 14.75 s of requests
    app = SwarmtraceApp(feed, step=True)
    async with app.run_test(size=(100, 30)) as pilot:
        await until(pilot, lambda: app.state.store.total >= 1, "the first request")
        talk = app.screen
        assert isinstance(talk, TalkScreen)
        await pilot.press("a")
        assert talk._auto_pace == TalkScreen.AUTO_S
        await pilot.press("plus")  # faster: the running auto-advance speeds up at once
        await until(pilot, lambda: talk._auto_pace == TalkScreen.AUTO_S / 2, "the new pace")
        await pilot.press("a")
        await pilot.press(*["greater_than_sign"] * 30)  # the whole trace is in
        await until(pilot, lambda: app.state.finished, "the end of the replay")
        await pilot.press("end")
        last = talk.index
        assert last == app.state.store.total - 1 > 0
        await pilot.press("less_than_sign")  # back 10 s: the list empties and refills
        await until(pilot, lambda: app.state.store.total > 0, "the requests before the seek")
        await pilot.pause(0.2)
        # Talk mode stays at the newest request there is (#12 at 00:04), not the first one.
        assert len(app.state.store) == 12
        assert 0 < talk.index == min(last, len(app.state.store) - 1), (talk.index, last)


@sync
async def test_talk_mode_walks_hops_in_causal_order() -> None:
    app = SwarmtraceApp(feed_of(SWARM), step=True)
    async with app.run_test(size=(100, 30)) as pilot:
        await until(pilot, lambda: app.state.finished, "the fixture")
        talk = app.screen
        assert isinstance(talk, TalkScreen)
        kinds = []
        for _ in range(7):
            kinds.append(str(talk.query_one("#sentence").render()))
            await pilot.press("right")
        mark = next(i for i, s in enumerate(kinds) if "sets fwmark" in s)
        lb = next(i for i, s in enumerate(kinds) if s.startswith("IPVS in"))
        assert mark < lb


# -- requests screen: path focus, list height, columns, filters -------------------------------


@sync
async def test_tab_focuses_the_hop_path_and_arrows_scroll_it() -> None:
    app = SwarmtraceApp(feed_of(SWARM))
    async with app.run_test(size=(100, 30)) as pilot:
        await until(pilot, lambda: app.state.finished, "the fixture")
        await pilot.press("home")
        await pilot.press("tab")
        path = app.screen.query_one(HopPath)
        assert app.focused is path
        before = app.screen.request_list.selected  # type: ignore[attr-defined]
        await pilot.press("down", "down", "down")
        await pilot.pause()
        assert path.scroll_y == 3
        assert app.screen.request_list.selected is before  # type: ignore[attr-defined]


def screen_lines(app: SwarmtraceApp) -> list[str]:
    """The screen as a user sees it, line by line."""
    import io

    from rich.console import Console

    width, height = app.size
    console = Console(width=width, height=height, file=io.StringIO(), record=True)
    console.print(app.screen._compositor.render_update(full=True))
    return console.export_text().splitlines()


@sync
async def test_end_scrolls_the_hop_path_to_its_last_line() -> None:
    # Request #2 of the sample (a mesh request over VXLAN) is taller than the path at 160x45:
    # End must show its last line, the reply, on screen.
    from tests.test_tui_snapshots import sample_app

    app = sample_app()
    async with app.run_test(size=(160, 45)) as pilot:
        await until(pilot, lambda: app.state.finished, "the sample")
        await pilot.press("home", "down", "tab", "end")
        path = app.screen.query_one(HopPath)
        await until(pilot, lambda: path.scroll_y == path.max_scroll_y > 0, "the scroll")
        await pilot.pause(0.2)
        lines = screen_lines(app)
        assert "◀ reply +3.88 ms" in lines[-3], lines[-6:]  # above the status and key bars
        await pilot.press("home")
        await until(pilot, lambda: path.scroll_y == 0, "the scroll back")
        await pilot.pause(0.2)
        assert "#2 mesh" in screen_lines(app)[15 + 1]


@sync
async def test_list_height_follows_its_rows() -> None:
    requests, _ = load_requests(LAB)
    app = SwarmtraceApp(ListFeed(requests[:3], info=INFO))
    async with app.run_test(size=(100, 30)) as pilot:
        await until(pilot, lambda: app.state.finished, "three requests")
        await pilot.pause()
        assert app.screen.query_one("#requests").size.height == 4  # header + 3 rows
    app = SwarmtraceApp(ListFeed(requests, info=INFO))
    async with app.run_test(size=(100, 30)) as pilot:
        await until(pilot, lambda: app.state.finished, "sixteen requests")
        await pilot.pause()
        assert app.screen.query_one("#requests").size.height == 9  # 35% of the room


def test_80_columns_keep_the_essential_columns_and_wide_ones_widen_names() -> None:
    at80 = {c.title for c in fit_columns(80)}
    assert {"client", "mode", "task", "node", "latency", "status"} <= at80
    assert sum(c.width + 1 for c in fit_columns(80)) <= 80
    wide = {c.title: c.width for c in fit_columns(160)}
    assert wide["task"] >= len("vote-vip.1.mcp6y4") and len(wide) == 9


def test_filters_are_exact_where_names_nest_and_words_search_hops() -> None:
    from tests.test_narrate import sample

    store = RequestStore()
    store.apply(sample())
    store.set_query("service:vote")
    shown = list(store.window(0, len(store)))
    # The 6 connections to vote and the 6 DNS queries that asked for it, as `replay --service
    # vote` prints them; nothing of vote-vip.
    assert len(shown) == 12 and {r.service for r in shown} == {"vote", ""}
    assert {r.mode for r in shown} == {"dnsrr", "dns"}
    assert not [r for r in shown if "vote-vip" in str([h.detail for h in r.hops])]
    store.set_query("mode:dns")
    assert {r.mode for r in store.window(0, len(store))} == {"dns"}
    store.set_query("vxlan")
    assert len(store) and all(any(h.kind is HopKind.VXLAN for h in r.hops)
                              for r in store.window(0, len(store)))
    store.set_query("ingress_sbox")
    assert len(store) == 6


@sync
async def test_filter_box_shows_the_match_count() -> None:
    app = SwarmtraceApp(feed_of(LAB))
    async with app.run_test(size=(100, 30)) as pilot:
        await until(pilot, lambda: app.state.finished, "the fixture")
        await pilot.press("slash", *"status:dropped", "enter")
        await pilot.pause(0.1)
        assert app.screen.query_one("#filter").border_title == "1 of 16 match"


# -- the command line in a terminal -----------------------------------------------------------


def _in_a_terminal(*argv: str) -> str:
    """Run swarmtrace with stdout on a pseudo-terminal (as a user would), return its output."""
    leader, follower = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "tracer", *argv], stdout=follower,
                            stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL, cwd=ROOT)
    os.close(follower)
    out = b""
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:
            break
        if not chunk:
            break
        out += chunk
    assert proc.wait(timeout=60) == 0
    os.close(leader)
    return out.decode()


def test_oneline_and_count_print_text_in_a_terminal() -> None:
    out = _in_a_terminal("replay", "--sample", "--oneline", "--count", "3")
    lines = [x for x in out.splitlines() if x.startswith("#")]
    assert [x.split()[0] for x in lines] == ["#1", "#2", "#3"]


def test_step_without_tui_narrates_in_a_plain_terminal() -> None:
    out = _in_a_terminal("replay", "--sample", "--step", "--no-tui", "--count", "1")
    assert "The client 192.168.199.1 opens a TCP connection" in out
    assert "IPVS in ingress_sbox on node1, fwmark 258, round robin" in out


def test_replay_service_is_exact() -> None:
    r = subprocess.run([sys.executable, "-m", "tracer", "replay", "--sample", "--oneline",
                        "--service", "vote"], capture_output=True, text=True, cwd=ROOT,
                       check=True)
    lines = r.stdout.splitlines()
    assert len(lines) == 12  # 6 DNS queries for vote and the 6 connections that followed
    assert not [x for x in lines if "vote-vip" in x]


@sync
async def test_leaving_talk_mode_resumes_the_replay_it_paused() -> None:
    app = SwarmtraceApp(feed_of(SWARM, paced=True, speed=1.0))
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause()
        await pilot.press("t")
        assert app.state.paused
        await pilot.press("1")
        assert not app.state.paused
        await pilot.press("space", "t", "1")  # paused by the user: stays paused
        assert app.state.paused


@sync
async def test_presentation_layout_moves_the_packet_along_the_path() -> None:
    from tracer.tui.widgets.text_box import TextBox

    app = SwarmtraceApp(feed_of(SWARM), present=True)
    async with app.run_test(size=(100, 30)) as pilot:
        await until(pilot, lambda: app.state.finished, "the fixture")
        await pilot.pause()
        talk = app.screen
        assert isinstance(talk, TalkScreen) and talk.has_class("presenting")
        stage = talk.query_one("#stage", TextBox)
        assert "● host" in str(stage.content) and "node1" in str(stage.content)
        await pilot.press(*["right"] * 4)  # send, DNAT, bridge, enter: into ingress_sbox
        assert "● ingress_sbox" in str(stage.content)
        assert "VXLAN" in str(stage.content) or "vni" in str(stage.content).lower()
        await pilot.press("d")  # the other theme: drawn again, packet still there
        await pilot.pause()
        assert "● ingress_sbox" in str(stage.content)
        await pilot.press("p")
        assert not talk.has_class("presenting")


def test_every_path_says_what_its_times_count_at_every_width() -> None:
    # Item 10 of issue 15: the path's times are since the request's first packet, and the path
    # says so above its time column at 80, 100 and 160 columns (the header has no room at 100).
    from tests.test_narrate import sample
    from tracer.tui.path_render import Palette, PathDrawing

    for width in (77, 97, 157):  # the path's room at 80, 100 and 160 columns
        for r in sample():
            lines = [x.plain for x in PathDrawing(r, width, Palette()).lines]
            assert sum("since the first packet" in x for x in lines) == 1, (width, r.id)
            assert all(len(x) == width for x in lines[1:-1]), (width, r.id)
            if r.backend_name:  # the header keeps the task's whole name, at 80 columns too
                assert r.backend_name in lines[0], (width, lines[0])
