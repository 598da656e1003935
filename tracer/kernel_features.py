"""Ask the running kernel what it can do by trying it: open a kprobe, load tiny BPF programs.

Every try is undone before returning (the fd is closed, so the probe or program is gone).
Raw syscalls through ctypes: nothing here needs libbpf, BCC or the project's BPF objects.
"""

from __future__ import annotations

import ctypes
import errno
import gzip
import os
import re
import struct
from dataclasses import dataclass
from pathlib import Path

SYS_PERF_EVENT_OPEN = 298  # x86_64
SYS_BPF = 321  # x86_64
BPF_PROG_LOAD = 5
PROG_TYPE_TRACING = 26
PROG_TYPE_NETFILTER = 32
ATTACH_TRACE_FENTRY = 24
ATTACH_NETFILTER = 45
PERF_FLAG_FD_CLOEXEC = 8
VMLINUX_BTF = Path("/sys/kernel/btf/vmlinux")
KPROBE_PMU = Path("/sys/bus/event_source/devices/kprobe/type")
KPROBE_EVENTS = (
    Path("/sys/kernel/tracing/kprobe_events"),
    Path("/sys/kernel/debug/tracing/kprobe_events"),
)
# A function every kernel with IPv4 has: target of the kprobe and fentry tries.
PROBE_FUNCTION = "tcp_v4_connect"

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


@dataclass(frozen=True)
class TryResult:
    ok: bool
    detail: str  # evidence when ok, the kernel's answer (errno) when not
    errno: int = 0  # the kernel's errno when not ok: EPERM/EACCES mean "not allowed", not "absent"


def kernel_config() -> tuple[dict[str, str], str] | None:
    """The running kernel's build config (CONFIG_X -> value) and where it was read from."""
    release = os.uname().release
    sources = (Path(f"/boot/config-{release}"), Path("/proc/config.gz"))
    for source in sources:
        try:
            raw = source.read_bytes()
        except OSError:
            continue
        text = (gzip.decompress(raw) if source.suffix == ".gz" else raw).decode(errors="replace")
        config: dict[str, str] = {}
        for line in text.splitlines():
            if line.startswith("CONFIG_"):
                key, _, value = line.partition("=")
                config[key] = value
        return config, str(source)
    return None


def release_at_least(release: str, major: int, minor: int) -> bool:
    """Whether a `uname -r` string such as 6.18.44-fc-v657 is at least major.minor."""
    m = re.match(r"(\d+)\.(\d+)", release)
    return m is not None and (int(m.group(1)), int(m.group(2))) >= (major, minor)


def _syscall(number: int, *args: int | ctypes.Array[ctypes.c_char]) -> int:
    # syscall(2) is variadic and reads every argument as a long: widen ints explicitly.
    wide = [ctypes.c_long(a) if isinstance(a, int) else a for a in args]
    fd = int(_libc.syscall(ctypes.c_long(number), *wide))
    if fd < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return fd


def _exists(path: Path) -> bool:
    """Path.exists(), False where we may not look: tracefs is root's only (0700), and an
    unprivileged user must get the "run as root" line, not a PermissionError."""
    try:
        return path.exists()
    except PermissionError:
        return False


def try_kprobe(function: str = PROBE_FUNCTION) -> TryResult:
    """Create (and at once remove) a kprobe on `function` through the perf kprobe PMU."""
    try:
        pmu_type = int(KPROBE_PMU.read_text())
    except (OSError, ValueError):
        # Kernels before 4.17 have no kprobe PMU; BCC then writes tracefs kprobe_events.
        for events in KPROBE_EVENTS:
            if _exists(events):
                return TryResult(True, f"{events} present (no kprobe PMU to try)")
        return TryResult(False, f"no kprobe perf PMU ({KPROBE_PMU.parent} missing)")
    name = ctypes.create_string_buffer(function.encode())
    attr = ctypes.create_string_buffer(128)
    # perf_event_attr: type, size, then config1 (kprobe_func) at offset 56.
    struct.pack_into("<II", attr, 0, pmu_type, len(attr))
    struct.pack_into("<Q", attr, 56, ctypes.addressof(name))
    try:
        fd = _syscall(SYS_PERF_EVENT_OPEN, attr, -1, 0, -1, PERF_FLAG_FD_CLOEXEC)
    except OSError as err:
        return TryResult(False, f"kprobe on {function} refused: {err.strerror}", err.errno or 0)
    os.close(fd)
    return TryResult(True, f"kprobe on {function} attached and removed")


def btf_function_id(name: str, btf: Path = VMLINUX_BTF) -> int | None:
    """The BTF type id of kernel function `name` in vmlinux BTF (needed to load fentry)."""
    data = btf.read_bytes()
    _magic, _ver, _flags, hdr_len, type_off, type_len, str_off, _str_len = struct.unpack_from(
        "<HBBIIIII", data, 0
    )
    strings = hdr_len + str_off
    at = data.find(b"\0" + name.encode() + b"\0", strings)
    if at < 0:
        return None
    name_off = at + 1 - strings
    # Extra bytes after the 12-byte btf_type, per kind: fixed, or per member (vlen).
    fixed = {1: 4, 3: 12, 14: 4, 17: 4}
    per_member = {4: 12, 5: 12, 6: 8, 13: 8, 15: 12, 19: 12}
    pos, end, type_id = hdr_len + type_off, hdr_len + type_off + type_len, 0
    while pos < end:
        type_id += 1
        t_name, info = struct.unpack_from("<II", data, pos)
        kind, vlen = (info >> 24) & 0x1F, info & 0xFFFF
        if kind == 12 and t_name == name_off:  # BTF_KIND_FUNC
            return type_id
        pos += 12 + fixed.get(kind, 0) + per_member.get(kind, 0) * vlen
    return None


def _load_program(prog_type: int, attach_type: int, btf_id: int, ret: int) -> int:
    """BPF_PROG_LOAD of `r0 = ret; exit`; returns the program fd."""
    insns = ctypes.create_string_buffer(
        struct.pack("<BBhi", 0xB7, 0, 0, ret) + struct.pack("<BBhi", 0x95, 0, 0, 0)
    )
    license = ctypes.create_string_buffer(b"GPL")
    attr = ctypes.create_string_buffer(128)
    struct.pack_into("<II", attr, 0, prog_type, 2)
    struct.pack_into("<QQ", attr, 8, ctypes.addressof(insns), ctypes.addressof(license))
    struct.pack_into("<I", attr, 68, attach_type)  # expected_attach_type
    struct.pack_into("<I", attr, 108, btf_id)  # attach_btf_id
    return _syscall(SYS_BPF, BPF_PROG_LOAD, attr, len(attr))


def try_fentry(function: str = PROBE_FUNCTION) -> TryResult:
    """Load (and at once unload) an fentry program for `function`."""
    try:
        btf_id = btf_function_id(function)
    except OSError as err:
        return TryResult(False, f"no vmlinux BTF: {err.strerror}")
    if btf_id is None:
        return TryResult(False, f"{function} not in vmlinux BTF")
    try:
        fd = _load_program(PROG_TYPE_TRACING, ATTACH_TRACE_FENTRY, btf_id, 0)
    except OSError as err:
        return TryResult(False, f"fentry program load refused: {err.strerror}", err.errno or 0)
    os.close(fd)
    return TryResult(True, f"fentry program for {function} loaded and unloaded")


def try_netfilter_program() -> TryResult:
    """Load (and at once unload) a BPF netfilter program that accepts every packet."""
    try:
        fd = _load_program(PROG_TYPE_NETFILTER, ATTACH_NETFILTER, 0, 1)  # NF_ACCEPT
    except OSError as err:
        return TryResult(False, f"netfilter program load refused: {err.strerror}", err.errno or 0)
    os.close(fd)
    return TryResult(True, "netfilter program loaded and unloaded")


def refused_for_privileges(tried: TryResult) -> bool:
    """The kernel said no because of who asked (EPERM, EACCES), not because it cannot."""
    return not tried.ok and tried.errno in (errno.EPERM, errno.EACCES)
