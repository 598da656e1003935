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

from tracer import __version__, kernel_features, leftovers, privileges
from tracer.errors import LabError
from tracer.procs import cmdline
from tracer.vm.boot import find_kernel, find_qemu, find_vng, kvm_usable
from tracer.vm.guest import in_guest

DOCKER_SOCKET = Path("/var/run/docker.sock")
OS_RELEASE = Path("/etc/os-release")
# The image carries both backends; the README's Install section gives its `docker run` line.
IMAGE_HINT = f"or run the image swarmtrace:{__version__} (README: Install)"
NOT_TRIED = "not tried: that needs root or the capabilities under privileges"
LIVE_COMMANDS = ("trace", "tui", "demo")


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


def _may_try() -> bool:
    """Whether a refusal from the kernel means "cannot" rather than "not allowed"."""
    return not privileges.missing("core", privileges.current())


def check_privileges() -> Capability:
    privs = privileges.current()
    have = ", ".join(f"CAP_{c.name}" for c in sorted(privs.effective)) or "no capabilities"
    who = "root" if privs.uid == 0 else f"uid {privs.uid}"
    lacking = privileges.explain("core", privs)
    if not lacking:
        return Capability("privileges", "privileges", Support.YES, f"{who}: {have}")
    return Capability("privileges", "privileges", Support.NO,
                      f"{who}: {have}; tracing needs root or capabilities", lacking)


def os_release() -> dict[str, str]:
    """/etc/os-release as a dict (ID, VERSION_ID, PRETTY_NAME ...); empty when absent."""
    try:
        text = OS_RELEASE.read_text()
    except OSError:
        return {}
    pairs = (line.partition("=") for line in text.splitlines() if "=" in line)
    return {k: v.strip().strip('"') for k, _, v in pairs}


def apt_candidates(packages: list[str]) -> dict[str, bool] | None:
    """Which packages apt could install here (None: no apt on this host)."""
    if not _which("apt-cache"):
        return None
    done = subprocess.run(["apt-cache", "policy", *packages], capture_output=True, text=True,
                          timeout=30, check=False)
    found: dict[str, bool] = dict.fromkeys(packages, False)
    current = ""
    for line in done.stdout.splitlines():
        if not line.startswith(" ") and line.endswith(":"):
            current = line[:-1]
        elif line.strip().startswith("Candidate:") and current in found:
            found[current] = line.split(":", 1)[1].strip() != "(none)"
    return found


def headers_fix(release: str, distro: str, available: bool | None) -> str:
    """What to install for bcc's kernel headers; never a package the archive does not have."""
    package = f"linux-headers-{release}"
    if available is None:
        return f"for bcc: install your distribution's kernel headers for {release}"
    if available:
        return f"for bcc: apt-get install {package}"
    return (f"{distro} has no package {package} (a custom kernel?): the core backend needs no "
            f"headers; bcc needs this kernel's build tree at /lib/modules/{release}/build")


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
    stock = "the core backend needs none; bcc needs a kernel with kprobes (distribution kernels)"
    if setting == "n" and config is not None:
        detail, fix = f"CONFIG_KPROBES is not set ({config[1]})", stock
    elif kernel_features.refused_for_privileges(tried) and not _may_try():
        if setting == "y" and config is not None:
            return Capability("kprobes", "kprobes", Support.YES,
                              f"CONFIG_KPROBES=y ({config[1]}); {NOT_TRIED}")
        return Capability("kprobes", "kprobes", Support.UNKNOWN, NOT_TRIED)
    else:
        detail, fix = tried.detail, stock + " (CONFIG_KPROBE_EVENTS=y)"
    return Capability("kprobes", "kprobes", Support.NO, detail, fix)


def check_fentry() -> Capability:
    tried = kernel_features.try_fentry()
    if tried.ok:
        return Capability("fentry", "fentry/fexit", Support.YES, tried.detail)
    if kernel_features.refused_for_privileges(tried) and not _may_try():
        return Capability("fentry", "fentry/fexit", Support.UNKNOWN, NOT_TRIED)
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
    new_enough = kernel_features.release_at_least(release, 6, 4)
    # Loading one needs CAP_BPF and CAP_NET_ADMIN: without them EPERM says nothing of the kernel.
    if kernel_features.refused_for_privileges(tried) and not _may_try() and setting != "n":
        if setting == "y" and config is not None and new_enough:
            return Capability("bpf_netfilter", label, Support.YES,
                              f"CONFIG_NETFILTER_BPF_LINK=y ({config[1]}); {NOT_TRIED}")
        if new_enough:
            return Capability("bpf_netfilter", label, Support.UNKNOWN, NOT_TRIED)
    if not new_enough:
        why = f"this is {release}; BPF netfilter programs need >= 6.4"
    elif setting == "n":
        why = "CONFIG_NETFILTER_BPF_LINK is not set"
    else:
        why = tried.detail
    return Capability(
        "bpf_netfilter", label, Support.NO, why,
        "the core backend falls back to tracepoints + conntrack (less detail); per-hook events "
        "need a kernel >= 6.4 with CONFIG_NETFILTER_BPF_LINK=y, or the bcc backend",
    )  # fmt: skip


def check_ipvs(config: Config) -> Capability:
    ipvsadm = "" if _which("ipvsadm") else "; ipvsadm missing: apt-get install ipvsadm"
    if Path("/proc/net/ip_vs").exists():
        return Capability("ipvs", "IPVS", Support.YES, f"ip_vs loaded (/proc/net/ip_vs){ipvsadm}")
    modprobe = _which("modprobe")
    loadable = subprocess.run(
        [modprobe, "--dry-run", "--quiet", "ip_vs"], capture_output=True, check=False
    ) if modprobe else None  # fmt: skip
    if loadable is not None and loadable.returncode == 0:
        return Capability(
            "ipvs", "IPVS", Support.YES, f"module ip_vs available (loads on demand){ipvsadm}"
        )
    setting = _config_says(config, "CONFIG_IP_VS")
    if setting == "n":
        detail, how = "CONFIG_IP_VS is not set", "boot a kernel with CONFIG_IP_VS=m"
    else:
        detail, how = "no ip_vs module for this kernel", "install this kernel's ip_vs module"
    return Capability(
        "ipvs", "IPVS", Support.NO, detail,
        f"Swarm's VIP and routing mesh need IPVS: {how} (distribution kernels have it)",
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
    package = f"linux-headers-{release}"
    available = apt_candidates([package])
    distro = os_release().get("PRETTY_NAME", "this distribution")
    fix = headers_fix(release, distro, None if available is None else available[package])
    return Capability("kernel_headers", "kernel headers", Support.NO, f"{build} missing", fix)


def check_bcc() -> Capability:
    # find_spec + the shared library, not `import bcc`: that loads LLVM (seconds, more in a VM).
    if importlib.util.find_spec("bcc") is None:
        found = apt_candidates(["python3-bpfcc"])
        install = ("apt-get install python3-bpfcc (a venv needs --system-site-packages)"
                   if found and found["python3-bpfcc"]
                   else "install your distribution's BCC Python bindings")
        return Capability("bcc", "BCC", Support.NO, "python module bcc not importable",
                          f"for bcc: {install}, {IMAGE_HINT}")
    if find_library("bcc") is None:
        return Capability("bcc", "BCC", Support.NO, "libbcc.so missing",
                          f"for bcc: install your distribution's libbcc, {IMAGE_HINT}")
    return Capability("bcc", "BCC", Support.YES, "python3-bpfcc and libbcc present")


def _which(name: str) -> str:
    """The program's path ("" if none): sbin too, which a user's PATH often lacks."""
    dirs = [*os.environ.get("PATH", "").split(os.pathsep), "/usr/sbin", "/sbin"]
    return next((str(Path(d) / name) for d in dirs if d and os.access(Path(d) / name, os.X_OK)),
                "")


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
        if isinstance(err, PermissionError):
            fix = "dockerd runs but this user may not ask it: run as root"
        else:
            fix = ("names of tasks and sandboxes come from dockerd: start it (in a container, "
                   f"mount {DOCKER_SOCKET})")
        return Capability(
            "docker", "docker socket", Support.NO, f"{path}: {err.strerror or err}", fix
        )
    return Capability("docker", "docker socket", Support.YES, f"{path} answers")


def check_swarm(docker: Capability) -> Capability:
    if docker.support is not Support.YES:
        return Capability("swarm", "swarm", Support.UNKNOWN, "cannot ask dockerd (docker socket)")
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


def _tracer_command(argv: list[str]) -> str | None:
    """'trace', 'tui' or 'demo' when argv runs swarmtrace with a command that loads probes."""
    for i, arg in enumerate(argv):
        if arg.endswith("swarmtrace") or (arg == "tracer" and argv[i - 1:i] == ["-m"]):
            words = [a for a in argv[i + 1:] if not a.startswith("-")]
            return words[0] if words and words[0] in LIVE_COMMANDS else None
    return None


def check_other_tracers() -> Capability:
    """A running core tracer holds the netfilter hook priorities: a second one gets EBUSY."""
    label = "other tracers"
    found = []
    for p in Path("/proc").iterdir():
        if p.name.isdigit() and int(p.name) != os.getpid():
            command = _tracer_command(cmdline(int(p.name)))
            if command is not None:
                found.append(f"pid {p.name} (swarmtrace {command})")
    if not found:
        return Capability("other_tracers", label, Support.YES, "none running")
    return Capability(
        "other_tracers", label, Support.NO, ", ".join(found),
        "one core tracer at a time: a second one's netfilter hooks are refused (EBUSY, same "
        "priorities); stop the other first",
    )  # fmt: skip


def check_leftovers() -> Capability:
    """What a killed tracer left: our BPF programs that no process holds, pins of ours."""
    label = "leftovers"
    try:
        found = leftovers.find()
    except PermissionError:
        return Capability("leftovers", label, Support.UNKNOWN,
                          "listing BPF programs needs CAP_SYS_ADMIN", "run doctor as root")
    except OSError as err:
        return Capability("leftovers", label, Support.UNKNOWN, f"cannot list BPF programs: {err}")
    left = found.orphans + [f"pinned {p}" for p in found.pinned]
    if left:
        return Capability(
            "leftovers", label, Support.NO, ", ".join(left),
            f"remove what is pinned under {leftovers.BPF_FS} (rm); a program no process and no "
            "pin holds is kept by a pinned link: `bpftool link list`",
        )  # fmt: skip
    pids = sorted({p for held in found.held_by.values() for p in held})
    running = f"; {len(found.programs)} programs held by pid {', '.join(map(str, pids))}" \
        if pids else ""
    return Capability("leftovers", label, Support.YES,
                      "none: a tracer pins nothing, its programs and links go with its process "
                      f"(SIGKILL too){running}")


def check_vm_lab() -> Capability:
    if in_guest():
        return Capability("vm_lab", "VM lab", Support.NO, "this is the VM lab's guest: no nesting")
    try:
        qemu, _vng, kernel = find_qemu(), find_vng(), find_kernel()
    except LabError as err:
        # A developer's tool (scripts/setup installs it), never a fix for a production host.
        return Capability("vm_lab", "VM lab", Support.NO, f"developers only: {err}")
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
        check_privileges,
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
    caps += [docker, check_swarm(docker), check_other_tracers(), check_leftovers(),
             check_vm_lab()]
    by_key = {c.key: c for c in caps}
    backend = choose_backend(by_key["kprobes"], by_key["kernel_headers"], by_key["bcc"])
    return Report(os.uname().release, tuple(caps), backend)
