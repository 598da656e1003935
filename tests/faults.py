"""Helpers of the fault tests: inject and undo a fault, run `check`, trace while sending."""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tracer.vm import in_guest

SWARMTRACE = [sys.executable, "-m", "tracer"]
READY = "swarmtrace: tracing with"
# bcc compiles its program first: 15-50 s in the emulated stock-kernel guest.
ATTACH_S = 300.0 if in_guest() else 30.0
# Set to a directory to keep each test's trace (.swt) and its requests (.json): the fixtures
# of tests/test_verdict.py, which replays the verdicts without root.
RECORD = os.environ.get("SWARMTRACE_RECORD_FAULTS")


def run(argv: list[str], check: bool = True) -> None:
    res = subprocess.run(argv, capture_output=True, text=True, check=False)
    if check and res.returncode != 0:
        raise AssertionError(f"{' '.join(argv)}: {res.stderr.strip()}")


@contextmanager
def injected(inject: tuple[list[str], ...], undo: tuple[list[str], ...]) -> Iterator[None]:
    """The fault's commands run, undone on the way out whatever happened."""
    try:
        for argv in inject:
            run(argv)
        yield
    finally:
        for argv in undo:
            run(argv, check=False)


def check(source: str, *args: str) -> tuple[int, list[dict[str, Any]], str]:
    """`swarmtrace check --json`: exit code, the findings of `source` ("netns lab",
    "docker"), and the text output of the same check."""
    res = subprocess.run([*SWARMTRACE, "check", "--json", *args], capture_output=True,
                         text=True, check=False, timeout=120)
    assert res.returncode in (0, 1), res.stderr
    reports = json.loads(res.stdout)["reports"]
    found = next(r for r in reports if r["source"] == source)
    text = subprocess.run([*SWARMTRACE, "check", *args], capture_output=True, text=True,
                          check=False, timeout=120)
    if RECORD:
        with (Path(RECORD) / "check.txt").open("a") as log:
            log.write(f"== {_test_name()}: swarmtrace check {' '.join(args)}\n"
                      f"{text.stdout}{text.stderr}")
    return res.returncode, found["findings"], text.stdout + text.stderr


def _test_name() -> str:
    return os.environ.get("PYTEST_CURRENT_TEST", "x").split("::")[-1].split(" ")[0]


@contextmanager
def traced(*args: str) -> Iterator[list[dict[str, Any]]]:
    """`trace --json ARGS` attached while the body sends traffic; its requests once it ends
    (give it --count or --timeout)."""
    name = _test_name()
    record = ["-w", str(Path(RECORD) / f"{name}.swt")] if RECORD else []
    proc = subprocess.Popen([*SWARMTRACE, "trace", "--json", *record, *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    deadline = time.monotonic() + ATTACH_S
    err = ""
    try:
        while READY not in err:
            if time.monotonic() > deadline or proc.poll() is not None:
                raise AssertionError(f"trace did not attach within {ATTACH_S:.0f} s: {err}")
            if select.select([proc.stderr], [], [], 0.5)[0]:
                err += proc.stderr.readline()
        found: list[dict[str, Any]] = []
        yield found
        out, rest = proc.communicate(timeout=90)
        assert proc.returncode == 0, err + rest
        found += [json.loads(line) for line in out.splitlines()]
        if RECORD:
            (Path(RECORD) / f"{name}.json").write_text(json.dumps(found, indent=1))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
