"""`swarmtrace doctor` on this host (BTF, no kprobes, no IPVS: core) and inside the stock-kernel VM
(kprobes, IPVS, headers, BCC: bcc), run through the real CLI."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from vm_fixtures import GuestRunner, vm_guest_fixture  # noqa: F401

from tracer.vm import in_guest


def doctor_json() -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-m", "tracer", "doctor", "--json"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    report: dict[str, Any] = json.loads(done.stdout)
    return report


def support(report: dict[str, Any]) -> dict[str, str]:
    return {c["key"]: c["support"] for c in report["capabilities"]}


def host_has_kprobes() -> bool:
    try:
        config = gzip.decompress(Path("/proc/config.gz").read_bytes()).decode()
    except OSError:
        return True  # unknown: not this kind of machine
    return "CONFIG_KPROBES=y" in config


def assert_fixes_are_one_line(report: dict[str, Any]) -> None:
    for cap in report["capabilities"]:
        assert "\n" not in cap["fix"] and "\n" not in cap["detail"], cap
        if cap["support"] == "no" and cap["key"] != "vm_lab":
            assert cap["fix"], f"{cap['key']} is missing but doctor says nothing to do"


@pytest.mark.skipif(in_guest(), reason="inside the VM guest: see test_doctor_inside_vm")
@pytest.mark.skipif(host_has_kprobes(), reason="host kernel has kprobes: not the BTF-only kind")
def test_doctor_on_btf_only_host() -> None:
    report = doctor_json()
    caps = support(report)
    assert caps["btf"] == "yes"
    assert caps["kprobes"] == "no"
    assert caps["ipvs"] == "no"
    assert report["backend"]["backend"] == "core"
    assert "kprobes" in report["backend"]["reason"]
    assert_fixes_are_one_line(report)


def test_doctor_text_lists_every_capability() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "tracer", "doctor"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    for label in ("BTF", "kprobes", "fentry", "BPF netfilter links", "IPVS", "kernel headers",
                  "BCC", "docker socket", "swarm", "VM lab"):  # fmt: skip
        assert any(line.strip().startswith(label) for line in lines), label
    assert any(line.startswith("backend auto -> ") for line in lines)


@pytest.mark.vm
def test_doctor_inside_vm(vm_guest: GuestRunner) -> None:
    rc, out = vm_guest.run(["swarmtrace", "doctor", "--json"], timeout=300)
    assert rc == 0, out
    report = json.loads(out.splitlines()[-1])
    caps = support(report)
    for key in ("btf", "kprobes", "fentry", "ipvs", "kernel_headers", "bcc"):
        assert caps[key] == "yes", report
    assert caps["bpf_netfilter"] == "no"  # 6.1 < 6.4
    assert report["backend"] == {
        "backend": "bcc", "reason": "kprobes, kernel headers and BCC present"
    }  # fmt: skip
    assert_fixes_are_one_line(report)
