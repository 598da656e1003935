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
