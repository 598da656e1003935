"""Snapshots of every TUI screen at 100x30, dark and light (pytest-textual-snapshot, Textual
pinned in pyproject.toml). Update after an intended change: pytest --snapshot-update."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tracer.source import SourceInfo
from tracer.tui.app import SwarmtraceApp
from tracer.tui.feed import ListFeed
from tracer.tui.request_json import load_requests

FIXTURES = Path(__file__).parent / "fixtures"
LAB = FIXTURES / "requests_sample.json"
SWARM = FIXTURES / "requests_swarm.json"
SIZE = (100, 30)
LAB_INFO = SourceInfo("replay", "6.18.0", False, notes=("IPVS stand-in: iptables round robin",))
SWARM_INFO = SourceInfo("replay", "6.1.0-28-amd64", False, notes=("recorded by bcc on node1",))


def app_of(
    path: Path, info: SourceInfo, *, step: bool = False, light: bool = False
) -> SwarmtraceApp:
    requests, topology = load_requests(path)
    app = SwarmtraceApp(ListFeed(requests, info=info, topology=topology), step=step)
    if light:
        app.theme = "textual-light"
    return app


async def loaded(pilot: Any) -> None:
    """Wait for the feed thread to deliver the whole fixture before pressing keys."""
    for _ in range(200):
        if pilot.app.state.finished:
            break
        await pilot.pause(0.05)
    await pilot.pause()


@pytest.mark.parametrize("light", [False, True], ids=["dark", "light"])
def test_requests_screen(snap_compare: Any, light: bool) -> None:
    app = app_of(LAB, LAB_INFO, light=light)
    assert snap_compare(app, terminal_size=SIZE, run_before=loaded)


def test_requests_drop_selected(snap_compare: Any) -> None:
    app = app_of(LAB, LAB_INFO)
    assert snap_compare(app, terminal_size=SIZE, run_before=loaded, press=["home", "n"])


def test_requests_filtered(snap_compare: Any) -> None:
    app = app_of(LAB, LAB_INFO)
    press = ["slash", *"backend-2", "enter", "home"]
    assert snap_compare(app, terminal_size=SIZE, run_before=loaded, press=press)


def test_swarm_path_across_nodes(snap_compare: Any) -> None:
    app = app_of(SWARM, SWARM_INFO)
    assert snap_compare(app, terminal_size=SIZE, run_before=loaded, press=["home"])


@pytest.mark.parametrize("light", [False, True], ids=["dark", "light"])
def test_services_screen(snap_compare: Any, light: bool) -> None:
    app = app_of(SWARM, SWARM_INFO, light=light)
    assert snap_compare(app, terminal_size=SIZE, run_before=loaded, press=["2"])


def test_topology_screen(snap_compare: Any) -> None:
    app = app_of(SWARM, SWARM_INFO)
    assert snap_compare(app, terminal_size=SIZE, run_before=loaded, press=["3"])


@pytest.mark.parametrize("light", [False, True], ids=["dark", "light"])
def test_talk_mode_at_the_load_balancer(snap_compare: Any, light: bool) -> None:
    app = app_of(SWARM, SWARM_INFO, step=True, light=light)
    press = ["right"] * 5  # send, DNAT, bridge, enter, MARK -> LB
    assert snap_compare(app, terminal_size=SIZE, run_before=loaded, press=press)


def test_talk_mode_stand_in(snap_compare: Any) -> None:
    app = app_of(LAB, LAB_INFO, step=True)
    press = ["right"] * 6  # send, enter, DNAT, bridge, enter, MARK -> LB
    assert snap_compare(app, terminal_size=SIZE, run_before=loaded, press=press)


def test_command_palette(snap_compare: Any) -> None:
    app = app_of(SWARM, SWARM_INFO)
    assert snap_compare(
        app, terminal_size=SIZE, run_before=loaded, press=["ctrl+p", *"filter task"]
    )


# -- issue 15: the bundled sample at 80x24, 100x30 and 160x45 ---------------------------------

SAMPLE_INFO = SourceInfo(
    "replay", "6.1.0-56-amd64", False,
    notes=("recorded by bcc on node1, node2", "sample: a real 2-node Docker Swarm"),
)


def sample_app(*, step: bool = False, light: bool = False) -> SwarmtraceApp:
    from tests.test_narrate import sample
    from tracer.commands.replay import sample_path
    from tracer.tracefile.topology import trace_names

    names = trace_names(sample_path())
    topology = names.snapshot() if names is not None else None
    app = SwarmtraceApp(ListFeed(list(sample()), info=SAMPLE_INFO, topology=topology), step=step)
    if light:
        app.theme = "textual-light"
    return app


@pytest.mark.parametrize("size", [(80, 24), (100, 30), (160, 45)], ids=lambda s: f"{s[0]}x{s[1]}")
def test_sample_mesh_request(snap_compare: Any, size: tuple[int, int]) -> None:
    # Request #2: node1 -> node2's published port, IPVS in node2's ingress_sbox, VXLAN back.
    assert snap_compare(sample_app(), terminal_size=size, run_before=loaded,
                        press=["home", "down"])


def test_sample_hop_path_scrolled_from_the_keyboard(snap_compare: Any) -> None:
    # Tab focuses the path; End scrolls it to its last line, the reply.
    assert snap_compare(sample_app(), terminal_size=(160, 45), run_before=loaded,
                        press=["home", "down", "tab", "end"])


def test_sample_filter_searches_hops_and_counts(snap_compare: Any) -> None:
    assert snap_compare(sample_app(), terminal_size=(100, 30), run_before=loaded,
                        press=["slash", *"vxlan", "enter", "home"])


@pytest.mark.parametrize("light", [False, True], ids=["dark", "light"])
@pytest.mark.parametrize("size", [(100, 30), (160, 45)], ids=lambda s: f"{s[0]}x{s[1]}")
def test_sample_talk_mode_on_the_dns_hop(
    snap_compare: Any, size: tuple[int, int], light: bool
) -> None:
    # Request #8 (VIP): its first hop is the DNS answer the client used, not a drop.
    press = ["colon", *"8", "enter"]
    assert snap_compare(sample_app(step=True, light=light), terminal_size=size,
                        run_before=loaded, press=press)


@pytest.mark.parametrize("light", [False, True], ids=["dark", "light"])
@pytest.mark.parametrize("size", [(100, 30), (160, 45)], ids=lambda s: f"{s[0]}x{s[1]}")
def test_sample_presentation_layout(
    snap_compare: Any, size: tuple[int, int], light: bool
) -> None:
    # Request #2 at its LB hop: the packet in node2's ingress_sbox, the narration under it.
    press = ["colon", *"2", "enter", "p", *["right"] * 5]
    assert snap_compare(sample_app(step=True, light=light), terminal_size=size,
                        run_before=loaded, press=press)


def test_sample_presentation_layout_at_80x24(snap_compare: Any) -> None:
    # The smallest terminal a speaker may have: the picture wraps, the narration stays whole.
    press = ["colon", *"2", "enter", "p", *["right"] * 5]
    assert snap_compare(sample_app(step=True), terminal_size=(80, 24), run_before=loaded,
                        press=press)


@pytest.mark.parametrize("size", [(100, 30), (160, 45)], ids=lambda s: f"{s[0]}x{s[1]}")
def test_sample_topology_picture(snap_compare: Any, size: tuple[int, int]) -> None:
    assert snap_compare(sample_app(), terminal_size=size, run_before=loaded, press=["3"])


def test_sample_services(snap_compare: Any) -> None:
    assert snap_compare(sample_app(), terminal_size=(160, 45), run_before=loaded, press=["2"])


def test_help_screen(snap_compare: Any) -> None:
    assert snap_compare(sample_app(), terminal_size=(100, 30), run_before=loaded,
                        press=["question_mark"])
