"""Probe backends: live EventSources fed by kernel programs (core: CO-RE, bcc: kprobes)."""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

# A checkout: the programs' sources (event.h, core.bpf.c, bcc_probes.c) in bpf/, and
# scripts/setup builds the CO-RE object into bpf/build.
CHECKOUT_BPF_DIR = Path(__file__).resolve().parents[2] / "bpf"
OBJECT_NAME = "core.bpf.o"


def _packaged() -> Path:
    # An installed wheel carries sources and object together in tracer/bpf (setup.py puts
    # them there); a wheel is unpacked on disk, so the resource is a real directory.
    return Path(str(resources.files("tracer").joinpath("bpf")))


def bpf_source_dir() -> Path:
    """Where the BPF sources (event.h and its headers, bcc_probes.c) are: the installed package,
    else the checkout."""
    packaged = _packaged()
    return packaged if (packaged / "event.h").is_file() else CHECKOUT_BPF_DIR


def bpf_object_path() -> Path:
    """The CO-RE object: SWARMTRACE_BPF_DIR if set, else the installed package's, else the
    checkout's bpf/build."""
    if base := os.environ.get("SWARMTRACE_BPF_DIR"):
        return Path(base) / OBJECT_NAME
    packaged = _packaged() / OBJECT_NAME
    return packaged if packaged.is_file() else CHECKOUT_BPF_DIR / "build" / OBJECT_NAME
