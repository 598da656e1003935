"""What a tracer that was killed could have left in the kernel, found for `doctor`.

A tracer pins nothing: its programs, maps and links live only in its file descriptors, and the
kernel frees them when the process dies, SIGKILL included. Left over would be one of our
programs (named st_*) that no process holds: pinned in bpffs by someone, or kept by a pinned
link. Raw bpf() syscalls, no libbpf: doctor runs where nothing else is installed.
"""

from __future__ import annotations

import ctypes
import os
import struct
from dataclasses import dataclass
from pathlib import Path

PROG_PREFIX = "st_"
BPF_FS = Path("/sys/fs/bpf")
SYS_BPF = 321  # x86_64
BPF_PROG_GET_NEXT_ID, BPF_PROG_GET_FD_BY_ID, BPF_OBJ_GET_INFO_BY_FD = 11, 13, 15
# struct bpf_prog_info up to its name: type, id, tag[8], lengths, pointers, ..., name[16].
PROG_INFO_LEN = 80
PROG_NAME_AT = 64

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


def _bpf(cmd: int, attr: ctypes.Array[ctypes.c_char]) -> int:
    ret = int(_libc.syscall(SYS_BPF, cmd, attr, len(attr)))
    if ret < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return ret


def _next_prog(start: int) -> int | None:
    attr = ctypes.create_string_buffer(struct.pack("<II", start, 0), 16)
    try:
        _bpf(BPF_PROG_GET_NEXT_ID, attr)
    except FileNotFoundError:  # ENOENT: no program after start
        return None
    return int(struct.unpack_from("<I", attr, 4)[0])


def _prog_name(prog_id: int) -> str | None:
    try:
        fd = _bpf(BPF_PROG_GET_FD_BY_ID, ctypes.create_string_buffer(struct.pack("<I", prog_id),
                                                                     16))
    except FileNotFoundError:  # unloaded meanwhile
        return None
    try:
        info = ctypes.create_string_buffer(PROG_INFO_LEN)
        attr = ctypes.create_string_buffer(
            struct.pack("<IIQ", fd, PROG_INFO_LEN, ctypes.addressof(info)), 16)
        _bpf(BPF_OBJ_GET_INFO_BY_FD, attr)
        return info.raw[PROG_NAME_AT:PROG_INFO_LEN].split(b"\0")[0].decode(errors="replace")
    finally:
        os.close(fd)


def our_programs() -> dict[int, str]:
    """Every loaded BPF program named like ours: id -> name. PermissionError without
    CAP_SYS_ADMIN."""
    found: dict[int, str] = {}
    prog_id = _next_prog(0)
    while prog_id is not None:
        name = _prog_name(prog_id)
        if name is not None and name.startswith(PROG_PREFIX):
            found[prog_id] = name
        prog_id = _next_prog(prog_id)
    return found


def holders(prog_ids: set[int]) -> dict[int, set[int]]:
    """Which processes hold each program, by an fd to it or to a link of it."""
    held: dict[int, set[int]] = {i: set() for i in prog_ids}
    me = os.getpid()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == me:
            continue
        try:
            fds = list((proc / "fdinfo").iterdir())
        except OSError:
            continue  # exited, or a kernel thread
        for fd in fds:
            try:
                text = fd.read_text()
            except OSError:
                continue
            for line in text.splitlines():
                if line.startswith("prog_id:") and (i := int(line.split()[1])) in held:
                    held[i].add(int(proc.name))
    return held


def pins(limit: int = 10_000) -> list[Path]:
    """Objects pinned in bpffs under names of ours (a tracer pins none)."""
    found: list[Path] = []
    if not BPF_FS.is_dir():
        return found
    for n, (root, dirs, files) in enumerate(os.walk(BPF_FS)):
        if n > limit:
            break
        found += [Path(root, f) for f in dirs + files
                  if f.startswith(PROG_PREFIX) or "swarmtrace" in f]
    return found


@dataclass(frozen=True)
class Leftovers:
    programs: dict[int, str]  # ours, loaded: id -> name
    held_by: dict[int, set[int]]  # program id -> pids holding it
    pinned: list[Path]

    @property
    def orphans(self) -> list[str]:
        """Our programs no process holds."""
        return [f"{name} (id {i})" for i, name in sorted(self.programs.items())
                if not self.held_by.get(i)]


def find() -> Leftovers:
    programs = our_programs()
    return Leftovers(programs, holders(set(programs)), pins())
