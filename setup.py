"""Wheel build hook: compile the CO-RE object once and ship it inside the package.

CO-RE objects relocate themselves against the running kernel's BTF when loaded, so one build
serves every BTF kernel of the same architecture; the wheel's users need no compiler."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

BPF = Path(__file__).resolve().parent / "bpf"
# What the backends read at run time: the CO-RE object (core), the C sources BCC compiles
# on the target host (bcc), and the program text `trace --ebpf` prints.
SHIPPED = ("build/core.bpf.o", "core.bpf.c", "bcc_probes.c", "event.h", "dns.h", "vxlan.h")


class BuildPyWithBpf(build_py):
    """build_py that also builds bpf/ (make -C bpf) and copies SHIPPED into tracer/bpf."""

    def run(self) -> None:
        super().run()
        if self.editable_mode:
            return  # a checkout finds bpf/ and bpf/build itself (scripts/setup builds them)
        try:
            subprocess.run(["make", "-s", "-C", str(BPF)], check=True)
        except (OSError, subprocess.CalledProcessError) as err:
            raise SystemExit(f"building the BPF objects failed ({err}): the wheel is built "
                             "with clang, bpftool and make (scripts/setup installs them)") from err
        out = Path(self.build_lib) / "tracer" / "bpf"
        out.mkdir(parents=True, exist_ok=True)
        for name in SHIPPED:
            shutil.copy2(BPF / name, out / Path(name).name)


setup(cmdclass={"build_py": BuildPyWithBpf})
