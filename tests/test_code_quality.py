"""The project's own checks: ruff, strict mypy, and the core never importing the TUI or BCC."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", *argv], cwd=ROOT, capture_output=True,
                          text=True, check=False)


def test_ruff() -> None:
    r = _run("ruff", "check", "tracer", "tests", "scripts")
    assert r.returncode == 0, r.stdout + r.stderr


def test_mypy_strict() -> None:
    r = _run("mypy", "tracer")
    assert r.returncode == 0, r.stdout + r.stderr


def test_replay_and_correlation_load_neither_tui_nor_bcc() -> None:
    # Replay, export and correlation must run where Textual or BCC are missing.
    code = ("import sys, tracer.pipeline, tracer.tracefile, tracer.sinks.text, tracer.correlate;"
            "bad = [m for m in sys.modules if m.startswith(('textual', 'bcc', 'tracer.tui'))];"
            "print(bad); sys.exit(1 if bad else 0)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stdout
