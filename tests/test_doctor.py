"""`swarmtrace doctor` on this host (BTF, no kprobes, no IPVS: core) and inside the stock-kernel VM
(kprobes, IPVS, headers, BCC: bcc), run through the real CLI."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from vm_fixtures import GuestRunner, vm_guest_fixture  # noqa: F401

from tracer import kernel_features, privileges
from tracer.doctor import headers_fix
from tracer.vm import in_guest

# setpriv prefixes: an ordinary user, and root whose bounding set holds only the given caps.
NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="setting uid and capabilities needs root")


def root_with(*caps: str) -> list[str]:
    keep = "".join(f",+{c}" for c in caps)
    return ["setpriv", f"--bounding-set=-all{keep}", "--inh-caps=-all"]


def doctor_json(prefix: tuple[str, ...] = ()) -> dict[str, Any]:
    done = subprocess.run(
        [*prefix, sys.executable, "-m", "tracer", "doctor", "--json"],
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
    for label in ("privileges", "BTF", "kprobes", "fentry", "BPF netfilter links", "IPVS",
                  "kernel headers", "BCC", "docker socket", "swarm", "VM lab"):  # fmt: skip
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


@needs_root
def test_doctor_as_non_root_says_root_or_capabilities() -> None:
    report = doctor_json(tuple(NOBODY))
    caps = {c["key"]: c for c in report["capabilities"]}
    assert caps["privileges"]["support"] == "no"
    assert "run as root" in caps["privileges"]["fix"]
    assert "--cap-add SYS_ADMIN" in caps["privileges"]["fix"]
    release = os.uname().release
    config = kernel_features.kernel_config()
    if kernel_features.release_at_least(release, 6, 4) and config is not None \
            and config[0].get("CONFIG_NETFILTER_BPF_LINK") == "y":
        # EPERM for lack of privileges is no kernel limit (it once said "needs >= 6.4" here).
        assert caps["bpf_netfilter"]["support"] == "yes", caps["bpf_netfilter"]
        assert ">= 6.4" not in caps["bpf_netfilter"]["detail"]
    assert_fixes_are_one_line(report)


@needs_root
@pytest.mark.parametrize(("keep", "lacking"), [
    ((), "CAP_SYS_ADMIN"),
    (("bpf", "perfmon", "net_admin"), "CAP_SYS_ADMIN (entering Docker's netns)"),
    (("sys_admin",), "CAP_NET_ADMIN (iptables and IPVS names)"),
])  # fmt: skip
def test_trace_without_a_capability_fails_in_one_line(keep: tuple[str, ...], lacking: str) -> None:
    done = subprocess.run(
        [*root_with(*keep), sys.executable, "-m", "tracer", "trace", "--backend", "core",
         "--timeout", "1"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 3, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lacking in lines[0] and "--cap-add" in lines[0], done.stderr


# Each step of the core backend under a reduced bounding set, on the real kernel: the facts
# tracer/privileges.py is built on. Prints "step: ok" or "step: <errno name>".
STEPS = """
import errno, os, sys
from pathlib import Path
from tracer.errors import ProbeUnavailable
from tracer.probes import libbpf, netns
from tracer.probes.core import bpf_object_path
obj = libbpf.BpfObject(bpf_object_path())
obj.set_max_entries("st_events", 1 << 16)
if sys.argv[1] == "nf":
    obj.make_netfilter("st_nf_hook")
else:
    obj.set_autoload("st_nf_hook", False)
try:
    obj.load()
    print("load: ok")
except ProbeUnavailable as err:
    print("load:", str(err).split(": ")[1].split()[0])
try:
    with netns.entered(Path(sys.argv[2])):
        print("setns: ok")
except OSError as err:
    print("setns:", errno.errorcode[err.errno])
"""


@needs_root
@pytest.mark.skipif(not kernel_features.release_at_least(os.uname().release, 6, 4),
                    reason="BPF netfilter programs need Linux >= 6.4")
@pytest.mark.parametrize(("keep", "netfilter", "load", "setns"), [
    (("bpf", "perfmon"), "tp", "ok", "EPERM"),
    (("bpf",), "tp", "EPERM", "EPERM"),
    (("perfmon",), "tp", "EPERM", "EPERM"),
    (("bpf", "perfmon"), "nf", "EPERM", "EPERM"),
    (("bpf", "perfmon", "net_admin"), "nf", "ok", "EPERM"),
    (("sys_admin",), "nf", "ok", "ok"),
])  # fmt: skip
def test_capabilities_each_step_needs(keep: tuple[str, ...], netfilter: str, load: str,
                                      setns: str) -> None:
    from tracer.probes.core import bpf_object_path

    if not bpf_object_path().is_file():
        pytest.skip("no CO-RE object: run scripts/setup")
    name = f"st-doctor-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        done = subprocess.run(
            [*root_with(*keep), sys.executable, "-c", STEPS, netfilter, f"/var/run/netns/{name}"],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
    finally:
        subprocess.run(["ip", "netns", "del", name], check=True)
    assert done.stdout.splitlines() == [f"load: {load}", f"setns: {setns}"], done.stderr[-2000:]


def test_headers_fix_never_names_a_package_the_archive_lacks() -> None:
    assert headers_fix("6.1.0-57-amd64", "Debian", True) == \
        "for bcc: apt-get install linux-headers-6.1.0-57-amd64"
    custom = headers_fix("6.18.44-fc-v657", "Debian GNU/Linux 12 (bookworm)", False)
    assert "apt-get" not in custom and "has no package linux-headers-6.18.44-fc-v657" in custom
    assert headers_fix("5.14.0-427.el9.x86_64", "Rocky Linux 9", None) == \
        "for bcc: install your distribution's kernel headers for 5.14.0-427.el9.x86_64"


def test_no_fix_offers_the_vm_lab() -> None:
    for cap in doctor_json()["capabilities"]:
        assert "swarmtrace vm" not in cap["fix"] and "VM lab" not in cap["fix"], cap


def test_doctor_names_another_running_tracer(tmp_path: Path) -> None:
    # A process whose command line is `swarmtrace trace` (python running a script named trace):
    # doctor reads command lines only, so it needs no probes to be loaded.
    (tmp_path / "swarmtrace").symlink_to(sys.executable)
    (tmp_path / "trace").write_text("import time\ntime.sleep(60)\n")
    other = subprocess.Popen([str(tmp_path / "swarmtrace"), "trace"], cwd=tmp_path)
    try:
        caps = {c["key"]: c for c in doctor_json()["capabilities"]}
    finally:
        other.kill()
        other.wait()
    assert caps["other_tracers"]["support"] == "no"
    assert f"pid {other.pid} (swarmtrace trace)" in caps["other_tracers"]["detail"]
    assert "EBUSY" in caps["other_tracers"]["fix"]


def test_the_line_names_the_fewest_capabilities_to_add() -> None:
    every = frozenset(privileges.Cap)
    bpf_only = privileges.Privileges(0, frozenset({privileges.Cap.BPF, privileges.Cap.PERFMON,
                                                   privileges.Cap.NET_ADMIN}), every)
    assert privileges.explain("core", bpf_only) == (
        "the core backend needs CAP_SYS_ADMIN (entering Docker's netns): root here lacks them "
        "(a container?): add --cap-add SYS_ADMIN")
    # No capabilities on a kernel before CAP_BPF existed: SYS_ADMIN covers loading there too.
    old_kernel = privileges.Privileges(1000, frozenset(), every - {privileges.Cap.BPF,
                                                                   privileges.Cap.PERFMON})
    line = privileges.explain("bcc", old_kernel)
    assert "CAP_BPF" not in line and line.startswith("the bcc backend needs CAP_SYS_ADMIN (")
    assert line.endswith("in a container add --cap-add SYS_ADMIN --cap-add NET_ADMIN")
    assert privileges.explain("core", privileges.Privileges(0, every, every)) == ""
