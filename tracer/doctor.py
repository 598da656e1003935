"""What this kernel and host support, which probe backend `--backend auto` picks, and why."""

from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
from collections.abc import Callable
from ctypes.util import find_library
from dataclasses import asdict, dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from tracer import kernel_features
from tracer.errors import LabError
from tracer.vm.boot import find_kernel, find_qemu, find_vng, kvm_usable
from tracer.vm.guest import in_guest

VM_HINT = "or use the stock-kernel VM lab: swarmtrace vm run -- swarmtrace trace ..."
DOCKER_SOCKET = Path("/var/run/docker.sock")


class Support(StrEnum):
    YES = "yes"
    NO = "no"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class Capability:
    key: str  # stable id in --json output
    label: str
    support: Support
    detail: str  # the evidence
    fix: str = ""  # one line: what to install or change; empty when supported


@dataclass(frozen=True)
class BackendChoice:
    backend: str  # "bcc" or "core"
    reason: str


@dataclass(frozen=True)
class Report:
    kernel: str
    capabilities: tuple[Capability, ...]
    backend: BackendChoice

    def get(self, key: str) -> Capability:
        return next(c for c in self.capabilities if c.key == key)

    def to_json(self) -> dict[str, Any]:
        return {
            "kernel": self.kernel,
            "capabilities": [asdict(c) for c in self.capabilities],
            "backend": asdict(self.backend),
        }


Config = tuple[dict[str, str], str] | None


def _config_says(config: Config, option: str) -> str | None:
    """'y'/'m' when set, 'n' when not, None when the config is unknown."""
    if config is None:
        return None
    return config[0].get(option, "n")


def check_btf() -> Capability:
    path = kernel_features.VMLINUX_BTF
    if path.is_file():
        return Capability("btf", "BTF", Support.YES, str(path))
    return Capability(
        "btf", "BTF", Support.NO, f"{path} missing",
        "boot a kernel built with CONFIG_DEBUG_INFO_BTF=y (most distribution kernels are)",
    )  # fmt: skip


def check_kprobes(config: Config) -> Capability:
    tried = kernel_features.try_kprobe()
    if tried.ok:
        return Capability("kprobes", "kprobes", Support.YES, tried.detail)
    setting = _config_says(config, "CONFIG_KPROBES")
    if setting == "n" and config is not None:
        detail = f"CONFIG_KPROBES is not set ({config[1]})"
        fix = f"boot a kernel with CONFIG_KPROBES=y, {VM_HINT}"
    elif os.geteuid() != 0:
        detail, fix = tried.detail, "run as root (kprobes need CAP_PERFMON and CAP_BPF)"
    else:
        detail, fix = tried.detail, f"boot a kernel with CONFIG_KPROBE_EVENTS=y, {VM_HINT}"
    return Capability("kprobes", "kprobes", Support.NO, detail, fix)


def check_fentry() -> Capability:
    tried = kernel_features.try_fentry()
    if tried.ok:
        return Capability("fentry", "fentry/fexit", Support.YES, tried.detail)
    return Capability(
        "fentry", "fentry/fexit", Support.NO, tried.detail,
        "not needed: the core backend uses tracepoints; fentry needs a kernel with BPF "
        "trampolines (CONFIG_DYNAMIC_FTRACE_WITH_DIRECT_CALLS, no lockdown)",
    )  # fmt: skip


def check_netfilter_link(config: Config) -> Capability:
    label = "BPF netfilter links"
    tried = kernel_features.try_netfilter_program()
    release = os.uname().release
    if tried.ok:
        return Capability("bpf_netfilter", label, Support.YES, f"{tried.detail} ({release})")
    setting = _config_says(config, "CONFIG_NETFILTER_BPF_LINK")
    why = "CONFIG_NETFILTER_BPF_LINK is not set" if setting == "n" else tried.detail
    return Capability(
        "bpf_netfilter", label, Support.NO, f"{why} (needs kernel >= 6.4, this is {release})",
        "core backend degrades to tracepoints + conntrack; for netfilter hooks boot a kernel "
        ">= 6.4 with CONFIG_NETFILTER_BPF_LINK=y",
    )  # fmt: skip


def check_ipvs(config: Config) -> Capability:
    ipvsadm = "" if _which("ipvsadm") else "; ipvsadm missing: apt-get install ipvsadm"
    if Path("/proc/net/ip_vs").exists():
        return Capability("ipvs", "IPVS", Support.YES, f"ip_vs loaded (/proc/net/ip_vs){ipvsadm}")
    loadable = subprocess.run(
        ["modprobe", "--dry-run", "--quiet", "ip_vs"], capture_output=True, check=False
    ) if _which("modprobe") else None  # fmt: skip
    if loadable is not None and loadable.returncode == 0:
        return Capability(
            "ipvs", "IPVS", Support.YES, f"module ip_vs available (loads on demand){ipvsadm}"
        )
    setting = _config_says(config, "CONFIG_IP_VS")
    detail = "CONFIG_IP_VS is not set" if setting == "n" else "no ip_vs module for this kernel"
    return Capability(
        "ipvs", "IPVS", Support.NO, detail,
        "Swarm's VIP and routing mesh need IPVS: boot a kernel with CONFIG_IP_VS=m, " + VM_HINT,
    )  # fmt: skip


def check_headers() -> Capability:
    release = os.uname().release
    build = Path(f"/lib/modules/{release}/build")
    if (build / "Makefile").is_file():
        return Capability("kernel_headers", "kernel headers", Support.YES, str(build.resolve()))
    if Path("/sys/kernel/kheaders.tar.xz").exists():
        return Capability(
            "kernel_headers", "kernel headers", Support.YES, "/sys/kernel/kheaders.tar.xz"
        )
    return Capability(
        "kernel_headers", "kernel headers", Support.NO, f"{build} missing",
        f"apt-get install linux-headers-{release} (a custom kernel: its build tree), {VM_HINT}",
    )  # fmt: skip


def check_bcc() -> Capability:
    # find_spec + the shared library, not `import bcc`: that loads LLVM (seconds, more in a VM).
    if importlib.util.find_spec("bcc") is None:
        return Capability(
            "bcc", "BCC", Support.NO, "python module bcc not importable",
            "apt-get install python3-bpfcc; the venv needs --system-site-packages "
            "(scripts/setup makes it so)",
        )  # fmt: skip
    if find_library("bcc") is None:
        return Capability("bcc", "BCC", Support.NO, "libbcc.so missing", "apt-get install libbpfcc")
    return Capability("bcc", "BCC", Support.YES, "python3-bpfcc and libbcc present")


def _which(name: str) -> bool:
    dirs = [*os.environ.get("PATH", "").split(os.pathsep), "/usr/sbin", "/sbin"]
    return any(os.access(Path(d) / name, os.X_OK) for d in dirs if d)


def _docker_socket() -> Path:
    host = os.environ.get("DOCKER_HOST", "")
    return Path(host.removeprefix("unix://")) if host.startswith("unix://") else DOCKER_SOCKET


def check_docker_socket() -> Capability:
    path = _docker_socket()
    try:
        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(2)
            sock.connect(str(path))
    except OSError as err:
        return Capability(
            "docker", "docker socket", Support.NO, f"{path}: {err.strerror or err}",
            "apt-get install docker.io and start dockerd",
        )  # fmt: skip
    return Capability("docker", "docker socket", Support.YES, f"{path} answers")


def check_swarm(docker: Capability) -> Capability:
    if docker.support is not Support.YES:
        return Capability(
            "swarm", "swarm", Support.UNKNOWN, "no docker daemon to ask", "start dockerd first"
        )
    import docker as docker_sdk  # lazy: the SDK is only needed here

    try:
        client = docker_sdk.DockerClient(base_url=f"unix://{_docker_socket()}", timeout=5)
        try:
            swarm = client.info().get("Swarm", {})
        finally:
            client.close()
    except docker_sdk.errors.DockerException as err:
        return Capability("swarm", "swarm", Support.UNKNOWN, f"docker info failed: {err}",
                          "check that dockerd is healthy: docker info")  # fmt: skip
    state = swarm.get("LocalNodeState", "inactive")
    if state != "active":
        return Capability(
            "swarm", "swarm", Support.NO, f"this node is not in a swarm ({state})",
            "docker swarm init --advertise-addr <local address>",
        )  # fmt: skip
    role = "manager" if swarm.get("ControlAvailable") else "worker"
    nodes = swarm.get("Nodes")
    count = f", {nodes} nodes" if nodes else ""
    return Capability(
        "swarm", "swarm", Support.YES, f"node {swarm.get('NodeID', '?')[:12]} ({role}{count})"
    )


def check_vm_lab() -> Capability:
    if in_guest():
        return Capability("vm_lab", "VM lab", Support.NO, "this is the VM lab's guest: no nesting")
    try:
        qemu, _vng, kernel = find_qemu(), find_vng(), find_kernel()
    except LabError as err:
        return Capability("vm_lab", "VM lab", Support.NO, str(err).split(":")[0], str(err))
    accel = "KVM" if kvm_usable() else "software emulation, ~30-50 s boot"
    return Capability(
        "vm_lab", "VM lab", Support.YES, f"{kernel.version} + headers, {qemu.name} ({accel})"
    )


def choose_backend(kprobes: Capability, headers: Capability, bcc: Capability) -> BackendChoice:
    """bcc where kprobes, kernel headers and BCC all exist (it sees IPVS decide), else core."""
    missing = [c for c in (kprobes, headers, bcc) if c.support is not Support.YES]
    if not missing:
        return BackendChoice("bcc", "kprobes, kernel headers and BCC present")
    lacking = ", ".join(f"{c.label} missing" for c in missing)
    return BackendChoice("core", f"no bcc: {lacking}")


def diagnose() -> Report:
    """Check everything; each check is independent and never raises for a missing feature."""
    config = kernel_features.kernel_config()
    checks: list[Callable[[], Capability]] = [
        check_btf,
        lambda: check_kprobes(config),
        check_fentry,
        lambda: check_netfilter_link(config),
        lambda: check_ipvs(config),
        check_headers,
        check_bcc,
    ]
    caps = [check() for check in checks]
    docker = check_docker_socket()
    caps += [docker, check_swarm(docker), check_vm_lab()]
    by_key = {c.key: c for c in caps}
    backend = choose_backend(by_key["kprobes"], by_key["kernel_headers"], by_key["bcc"])
    return Report(os.uname().release, tuple(caps), backend)
