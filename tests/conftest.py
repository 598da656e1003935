"""Shared fixtures: the netns lab, built on the real kernel once per session, removed at the end."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tracer import lab as lab_mod


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--soak", action="store_true",
                     help="also run the long live-side soak tests (tests/test_soak*.py)")
    parser.addoption("--soak-minutes", type=int, default=60,
                     help="how long the recording soak runs (tests/test_soak_hour.py)")
    parser.addoption("--soak-rate", type=float, default=10.0,
                     help="requests per second of the recording soak (tests/test_soak_hour.py)")
    parser.addoption("--multihost", action="store_true",
                     help="also run the two-VM swarm (tests/test_multihost_vm.py)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for flag in ("soak", "multihost"):
        if config.getoption(f"--{flag}"):
            continue
        skip = pytest.mark.skip(reason=f"{flag} test: run with scripts/test --{flag}")
        for item in items:
            if item.get_closest_marker(flag) is not None:  # keywords also hold dir names
                item.add_marker(skip)


@pytest.fixture(scope="session")
def lab_session() -> Iterator[None]:
    """Removes the netns lab when the session ends, whatever the tests did to it."""
    if os.geteuid() != 0:
        pytest.skip("the netns lab needs root (network namespaces, iptables)")
    try:
        yield
    finally:
        lab_mod.down()


@pytest.fixture
def lab(lab_session: None) -> lab_mod.LabInfo:
    """The netns lab, up: built by the first test that asks, reused (or rebuilt if a test broke
    it) by the next ones."""
    return lab_mod.up()
