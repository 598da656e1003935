"""Two builds of the kernel programs compared in the lab: this checkout's CO-RE object and
another's (`--against DIR`, e.g. main's bpf/build), loaded in turns."""

from __future__ import annotations

import argparse
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tracer import lab
from tracer.probes import OBJECT_NAME

THIS_BUILD = Path(__file__).resolve().parents[2] / "bpf" / "build"


def add_against(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--against", type=Path, required=True,
                    help="directory of the other build's core.bpf.o (e.g. main's bpf/build)")


def check_against(path: Path) -> None:
    if not (path / OBJECT_NAME).is_file():
        raise SystemExit(f"no {OBJECT_NAME} in {path}: build the other checkout first")


@contextmanager
def object_dir(path: Path) -> Iterator[None]:
    """CoreSource loads the object in `path` inside the block."""
    before = os.environ.get("SWARMTRACE_BPF_DIR")
    os.environ["SWARMTRACE_BPF_DIR"] = str(path)
    try:
        yield
    finally:
        if before is None:
            del os.environ["SWARMTRACE_BPF_DIR"]
        else:
            os.environ["SWARMTRACE_BPF_DIR"] = before


@contextmanager
def lab_up() -> Iterator[lab.LabInfo]:
    """The lab for the block; taken down after it unless it was up before."""
    was_up = lab.status() is not None
    info = lab.up()
    try:
        yield info
    finally:
        if not was_up:
            lab.down()
