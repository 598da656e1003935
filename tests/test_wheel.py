"""The wheel on a machine without a compiler: a fresh venv outside the checkout, no clang,
bpftool or make on PATH, then `doctor` and a live `trace` of the netns lab with it."""

from __future__ import annotations

import json
import os
import re
import subprocess
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tracer import lab as lab_mod

pytestmark = [pytest.mark.image]

ROOT = Path(__file__).resolve().parents[1]
# What a production host lacks: the tools that build BPF objects.
BUILD_TOOLS = re.compile(r"^(clang|llc|llvm|gcc|g\+\+|cc|c\+\+|c89|c99|cpp|make|gmake|bpftool)")
N = 4


@pytest.fixture(scope="module")
def wheel() -> Path:
    res = subprocess.run([str(ROOT / "scripts" / "wheel")], capture_output=True, text=True,
                         check=False, timeout=600)
    assert res.returncode == 0, res.stderr
    return Path(res.stdout.strip())


def _no_build_tools_path(where: Path) -> str:
    """A PATH with every command of this machine except BUILD_TOOLS (links in one dir)."""
    where.mkdir()
    for d in ("/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"):
        for entry in sorted(Path(d).iterdir()) if Path(d).is_dir() else []:
            link = where / entry.name
            if not BUILD_TOOLS.match(entry.name) and not link.exists():
                link.symlink_to(entry)
    return str(where)


@pytest.fixture(scope="module")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[
        dict[str, str]]:
    """env for running the wheel's `swarmtrace` from a fresh venv, cwd outside the checkout."""
    base = tmp_path_factory.mktemp("wheel")
    venv = base / "venv"
    subprocess.run(["/usr/bin/python3", "-m", "venv", str(venv)], check=True)
    pip = subprocess.run([str(venv / "bin" / "pip"), "install", "-q", str(wheel)],
                         capture_output=True, text=True, check=False, timeout=600)
    assert pip.returncode == 0, pip.stderr
    env = {"PATH": f"{venv / 'bin'}:{_no_build_tools_path(base / 'bin')}", "HOME": str(base),
           "LANG": "C.UTF-8"}
    yield env


def _swarmtrace(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["swarmtrace", *args], capture_output=True, text=True, env=env,
                          cwd="/", check=False, timeout=120)


def test_wheel_is_pure_and_carries_the_objects(wheel: Path) -> None:
    assert re.fullmatch(r"swarm_tracer-[\w.]+-py3-none-any\.whl", wheel.name)
    names = set(zipfile.ZipFile(wheel).namelist())
    shipped = ("core.bpf.o", "bcc_probes.c", "event.h", "dns.h", "vxlan.h")
    assert {f"tracer/bpf/{n}" for n in shipped} <= names
    assert "tracer/data/sample.swt" in names


def test_installed_wheel_finds_its_objects_without_tools(installed: dict[str, str]) -> None:
    for tool in ("clang", "bpftool", "make"):
        assert subprocess.run(["sh", "-c", f"command -v {tool}"], env=installed,
                              check=False).returncode != 0
    where = subprocess.run(["python", "-c", "from tracer.probes import bpf_object_path as p;"
                            "print(p())"], capture_output=True, text=True, env=installed,
                           cwd="/", check=True).stdout.strip()
    assert where.endswith("site-packages/tracer/bpf/core.bpf.o") and Path(where).is_file()
    sample = _swarmtrace(installed, "replay", "--sample", "--oneline")
    assert sample.returncode == 0 and sample.stdout.startswith("#1 "), sample.stderr


@pytest.mark.root
@pytest.mark.skipif(os.geteuid() != 0, reason="needs root: BPF, netns and iptables")
@pytest.mark.skipif(not Path("/sys/kernel/btf/vmlinux").exists(), reason="kernel has no BTF")
def test_doctor_and_trace_from_the_wheel(installed: dict[str, str],
                                         lab: lab_mod.LabInfo) -> None:
    doctor = _swarmtrace(installed, "doctor", "--json")
    assert doctor.returncode == 0, doctor.stderr
    assert json.loads(doctor.stdout)["backend"]["backend"] == "core", doctor.stdout
    proc = subprocess.Popen(["swarmtrace", "trace", "--json", "--count", str(N), "--port",
                             "8080", "--timeout", "60"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=installed, cwd="/")
    assert proc.stderr is not None
    try:
        for line in proc.stderr:
            if line.startswith("swarmtrace: tracing with"):
                break
        else:
            pytest.fail("trace from the wheel exited before tracing")
        answers = lab_mod.traffic("mesh", N)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    by_client = {r["client"]: r for r in map(json.loads, out.splitlines())}
    for a in answers:
        r = by_client[a.client]
        assert (r["mode"], r["status"], r["backend"]["name"]) == ("mesh", "ok", a.backend)
        assert any(h["kind"] == "lb" and h["netns"] == "ingress_sbox" for h in r["hops"])
