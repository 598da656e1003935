"""Issue 13 defect 10: waits scale with the measured slowness, readiness is checked, and a
wait that runs out says what was slow (never a false result such as "traced 0 requests")."""

from __future__ import annotations

import importlib.util
import sys
import time
from pathlib import Path
from types import ModuleType

import pytest

from tracer import slowdown

REPO = Path(__file__).resolve().parent.parent


def _check_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "check_ipvs_backends", REPO / "scripts" / "check_ipvs_backends.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


CHECK = _check_script()


def test_factor_is_read_and_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    for value, want in (("2.5", 2.5), ("0.1", 1.0), ("inf", 1.0), ("nan", 1.0), ("x", 1.0),
                        ("1e9", slowdown.MAX_FACTOR)):
        monkeypatch.setenv(slowdown.ENV, value)
        assert slowdown.factor() == want, value
    monkeypatch.setenv(slowdown.ENV, "3")
    assert slowdown.scaled(300) == 900 and "x3.0" in slowdown.note()
    monkeypatch.delenv(slowdown.ENV)
    assert slowdown.factor() == 1.0 and slowdown.note() == ""


def test_boot_time_measures_the_slowdown() -> None:
    assert slowdown.from_boot(45, 45) == 1.0
    assert slowdown.from_boot(20, 45) == 1.0  # faster than the reference: never shorter waits
    assert slowdown.from_boot(135, 45) == 3.0
    assert 1.0 <= slowdown.host_load() <= slowdown.MAX_FACTOR


def _fake_tracer(script: str) -> object:
    return CHECK.Tracer("bcc", [sys.executable, "-c", script])


def test_a_tracer_that_attaches_is_waited_for() -> None:
    t = _fake_tracer(f"import sys, time; time.sleep(0.3); print({CHECK.READY!r} + ' x', "
                     "file=sys.stderr, flush=True); time.sleep(30)")
    try:
        t.wait_attached(time.monotonic() + 20, 20)  # type: ignore[attr-defined]
        assert t.attached  # type: ignore[attr-defined]
    finally:
        t.proc.kill()  # type: ignore[attr-defined]
        t.proc.wait()  # type: ignore[attr-defined]


def test_a_slow_tracer_ends_the_check_saying_so(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(slowdown.ENV, "2")
    t = _fake_tracer("import sys, time; print('compiling', file=sys.stderr, flush=True); "
                     "time.sleep(30)")
    try:
        with pytest.raises(SystemExit, match=r"bcc tracer was not ready within 1 s .*x2\.0"
                                             r".*compiling"):
            t.wait_attached(time.monotonic() + 0.5, 1)  # type: ignore[attr-defined]
    finally:
        t.proc.kill()  # type: ignore[attr-defined]
        t.proc.wait()  # type: ignore[attr-defined]


def test_a_tracer_that_exits_ends_the_check_saying_so() -> None:
    t = _fake_tracer("import sys; print('tracing needs root', file=sys.stderr); sys.exit(1)")
    with pytest.raises(SystemExit, match="exited before it was ready: tracing needs root"):
        t.wait_attached(time.monotonic() + 20, 20)  # type: ignore[attr-defined]


def test_tracers_stop_once_the_last_replies_are_in() -> None:
    script = ("import time\nfor i in range(3):\n    time.sleep(0.2)\n    print('{}', flush=True)\n"
              "time.sleep(30)")
    t = _fake_tracer(script)
    t0 = time.monotonic()
    got = CHECK.stop_all({"bcc": t}, sent=3)
    assert len(got["bcc"]["requests"]) == 3
    assert time.monotonic() - t0 < 10  # not the 30 s settle timeout
