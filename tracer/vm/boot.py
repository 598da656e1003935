"""Find a bootable stock kernel with matching headers and build the `vng` command line."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tracer.errors import LabError

BOOT_DIR = Path("/boot")
MODULES_DIR = Path("/lib/modules")
SETUP_HINT = "run scripts/setup (installs qemu-system-x86, linux-image-amd64, linux-headers-amd64)"


@dataclass(frozen=True)
class KernelImage:
    """A kernel on this machine that the VM can boot: image, modules and headers of one version."""

    version: str
    vmlinuz: Path
    headers: Path  # /lib/modules/<version>/build: BCC compiles against it inside the guest


@dataclass(frozen=True)
class VmConfig:
    """How to boot the guest. kvm=None means: use KVM when this machine really offers it."""

    memory: str = "2G"
    cpus: int = 2
    kvm: bool | None = None
    kernel: str | None = None  # version, e.g. "6.1.0-56-amd64"; None = newest usable
    boot_timeout_s: float = 300.0
    qemu_opts: tuple[str, ...] = ()  # extra qemu arguments, e.g. a NIC (tracer/vm/link.py)


def _version_key(version: str) -> tuple[int, ...]:
    return tuple(int(n) for n in re.findall(r"\d+", version))


def _usable(version: str) -> KernelImage | None:
    vmlinuz = BOOT_DIR / f"vmlinuz-{version}"
    headers = MODULES_DIR / version / "build"
    if not (os.access(vmlinuz, os.R_OK) and (MODULES_DIR / version / "modules.dep").is_file()):
        return None
    if not (headers / "Makefile").is_file():
        return None
    return KernelImage(version=version, vmlinuz=vmlinuz, headers=headers)


def find_kernel(version: str | None = None) -> KernelImage:
    """The kernel to boot: `version` if given, else the newest one with modules and headers."""
    if version is not None:
        found = _usable(version)
        if found is None:
            raise LabError(
                f"kernel {version} is not bootable here: need /boot/vmlinuz-{version}, its modules "
                f"and /lib/modules/{version}/build; apt-get install linux-image-{version} "
                f"linux-headers-{version}"
            )
        return found
    versions = sorted(
        (p.name.removeprefix("vmlinuz-") for p in BOOT_DIR.glob("vmlinuz-*")),
        key=_version_key,
        reverse=True,
    )
    for candidate in versions:
        found = _usable(candidate)
        if found is not None:
            return found
    raise LabError(f"no kernel image with matching headers in /boot: {SETUP_HINT}")


def kvm_usable() -> bool:
    """True when /dev/kvm can run an ordinary guest kernel.

    /dev/kvm alone is not enough: this machine's /dev/kvm is PVM (pagetable-based, no vmx),
    which only runs specially built guest kernels; a stock kernel hangs there. Hardware
    virtualisation shows up as vmx (Intel) or svm (AMD) in the CPU flags.
    """
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return False
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    flags = re.search(r"^flags\s*:(.*)$", cpuinfo, re.MULTILINE)
    return flags is not None and bool({"vmx", "svm"} & set(flags.group(1).split()))


def venv_bin() -> Path:
    """The bin directory of the Python running swarmtrace (the project's .venv)."""
    return Path(sys.executable).parent


def find_vng() -> Path:
    """The `vng` launcher from the [vm] extra (virtme-ng)."""
    local = venv_bin() / "vng"
    if local.is_file():
        return local
    found = shutil.which("vng")
    if found is None:
        raise LabError("vng (virtme-ng) not found: pip install -e '.[vm]' (scripts/setup does)")
    return Path(found)


def find_qemu() -> Path:
    found = shutil.which("qemu-system-x86_64")
    if found is None:
        raise LabError(f"qemu-system-x86_64 not found: {SETUP_HINT}")
    return Path(found)


def vng_env() -> dict[str, str]:
    """Environment for vng: it runs `virtme-run`, which lives next to it in the venv's bin."""
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(find_vng().parent), env.get("PATH", "/usr/bin:/bin")])
    return env


def vng_command(
    kernel: KernelImage,
    config: VmConfig,
    share: Path,
    overlays: Sequence[Path],
    exec_cmd: str,
) -> list[str]:
    """The vng command that boots `kernel` and runs `exec_cmd` as the guest's only job.

    The host's / is the guest's read-only root; `share` is the one directory the guest may
    write on the host; `overlays` are writable in the guest only (writes vanish at power-off).
    The guest gets no network device (vng's default), so its traffic cannot leave it; a NIC
    in `config.qemu_opts` is a link to another guest on this machine (tracer/vm/link.py).
    """
    kvm = kvm_usable() if config.kvm is None else config.kvm
    cmd = [
        str(find_vng()),
        "--run",
        str(kernel.vmlinuz),
        "--memory",
        config.memory,
        "--cpus",
        str(config.cpus),
        # The stock kernel enables AppArmor; dockerd then refuses to start containers.
        "--append",
        "apparmor=0",
        "--rwdir",
        str(share),
    ]
    for overlay in overlays:
        cmd += ["--overlay-rwdir", str(overlay)]
    if not kvm:
        cmd.append("--disable-kvm")
    if config.qemu_opts:
        cmd.append(f"--qemu-opts={shlex.join(config.qemu_opts)}")
    return [*cmd, "--exec", exec_cmd]


def missing_requirements() -> list[str]:
    """What the VM lab still needs on this machine, one line each (empty = ready)."""
    missing = []
    for check in (find_qemu, find_vng, find_kernel):
        try:
            check()
        except LabError as err:
            missing.append(str(err))
    return missing
