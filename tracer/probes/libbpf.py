"""Just enough of Debian's libbpf.so.1 (1.1) over ctypes to load a CO-RE object and attach it.

libbpf 1.1 predates BPF_PROG_TYPE_NETFILTER, so netfilter links are created with a raw
bpf(BPF_LINK_CREATE) syscall, in the netns they hook (see netns.py)."""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import logging
import os
import struct
from pathlib import Path

from tracer.errors import ProbeUnavailable

log = logging.getLogger(__name__)

BPF_PROG_TYPE_NETFILTER = 32
BPF_NETFILTER = 45  # enum bpf_attach_type
BPF_LINK_CREATE = 28
BPF_ENABLE_STATS = 32
BPF_PROG_TEST_RUN = 10
BPF_OBJ_GET_INFO_BY_FD = 15
SYS_BPF = 321  # x86_64
NFPROTO_IPV4 = 2

_PRINT_FN = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_void_p)


def _load() -> ctypes.CDLL:
    name = ctypes.util.find_library("bpf") or "libbpf.so.1"
    try:
        lib = ctypes.CDLL(name, use_errno=True)
    except OSError as err:
        raise ProbeUnavailable(f"libbpf is not installed ({err}): run scripts/setup") from err
    vp, cp, ci = ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int
    sigs = {
        "bpf_object__open_file": (vp, [cp, vp]),
        "bpf_object__load": (ci, [vp]),
        "bpf_object__close": (None, [vp]),
        "bpf_object__find_program_by_name": (vp, [vp, cp]),
        "bpf_object__find_map_by_name": (vp, [vp, cp]),
        "bpf_program__set_type": (ci, [vp, ci]),
        "bpf_program__set_expected_attach_type": (ci, [vp, ci]),
        "bpf_program__set_autoload": (ci, [vp, ctypes.c_bool]),
        "bpf_program__fd": (ci, [vp]),
        "bpf_program__attach": (vp, [vp]),
        "bpf_link__destroy": (ci, [vp]),
        "bpf_map__fd": (ci, [vp]),
        "bpf_map__set_max_entries": (ci, [vp, ctypes.c_uint32]),
        "bpf_map_update_elem": (ci, [ci, vp, vp, ctypes.c_uint64]),
        "bpf_map_lookup_elem": (ci, [ci, vp, vp]),
        "libbpf_set_print": (vp, [_PRINT_FN]),
    }
    for fn, (res, args) in sigs.items():
        f = getattr(lib, fn)
        f.restype, f.argtypes = res, args
    return lib


_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long
_libc.vsnprintf.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_char_p, ctypes.c_void_p]


@_PRINT_FN  # type: ignore[untyped-decorator]
def _libbpf_print(level: int, fmt: bytes, args: int) -> int:
    buf = ctypes.create_string_buffer(1024)
    _libc.vsnprintf(buf, len(buf), fmt, args)
    log.debug("libbpf: %s", buf.value.decode(errors="replace").rstrip())
    return 0


class BpfObject:
    """A loaded CO-RE object: programs, maps, and the links attached from it."""

    def __init__(self, path: Path) -> None:
        self.lib = _load()
        self.lib.libbpf_set_print(_libbpf_print)
        if not path.exists():
            raise ProbeUnavailable(f"BPF object {path} is missing: run scripts/setup")
        self._obj = self.lib.bpf_object__open_file(str(path).encode(), None)
        if not self._obj:
            raise ProbeUnavailable(f"cannot open {path}: {_errmsg()}: run scripts/setup")
        self._links: list[int] = []

    def program(self, name: str) -> int:
        prog = self.lib.bpf_object__find_program_by_name(self._obj, name.encode())
        if not prog:
            raise ProbeUnavailable(f"program {name} missing from the BPF object: run scripts/setup")
        return int(prog)

    def map_fd(self, name: str) -> int:
        m = self.lib.bpf_object__find_map_by_name(self._obj, name.encode())
        if not m:
            raise ProbeUnavailable(f"map {name} missing from the BPF object: run scripts/setup")
        return int(self.lib.bpf_map__fd(m))

    def set_max_entries(self, name: str, n: int) -> None:
        m = self.lib.bpf_object__find_map_by_name(self._obj, name.encode())
        self.lib.bpf_map__set_max_entries(m, n)

    def make_netfilter(self, name: str) -> None:
        prog = self.program(name)
        self.lib.bpf_program__set_type(prog, BPF_PROG_TYPE_NETFILTER)
        self.lib.bpf_program__set_expected_attach_type(prog, BPF_NETFILTER)

    def set_autoload(self, name: str, on: bool) -> None:
        self.lib.bpf_program__set_autoload(self.program(name), on)

    def load(self) -> None:
        if self.lib.bpf_object__load(self._obj):
            raise ProbeUnavailable(f"the kernel refused the BPF programs: {_errmsg()}")

    def prog_fd(self, name: str) -> int:
        return int(self.lib.bpf_program__fd(self.program(name)))

    def attach(self, name: str) -> None:
        """Attach by section (tp_btf/...): the link lives until close()."""
        link = self.lib.bpf_program__attach(self.program(name))
        if not link:
            raise ProbeUnavailable(f"cannot attach {name}: {_errmsg()}")
        self._links.append(link)

    def map_update(self, fd: int, key: bytes, value: bytes) -> None:
        k, v = ctypes.create_string_buffer(key), ctypes.create_string_buffer(value)
        if self.lib.bpf_map_update_elem(fd, k, v, 0):
            raise ProbeUnavailable(f"cannot configure the BPF filter: {_errmsg()}")

    def map_lookup(self, fd: int, key: bytes, value_size: int) -> bytes:
        k, v = ctypes.create_string_buffer(key), ctypes.create_string_buffer(value_size)
        if self.lib.bpf_map_lookup_elem(fd, k, v):
            return b""
        return v.raw

    def close(self) -> None:
        for link in self._links:
            self.lib.bpf_link__destroy(link)
        self._links.clear()
        if self._obj:
            self.lib.bpf_object__close(self._obj)
            self._obj = None


def _errmsg() -> str:
    e = ctypes.get_errno()
    return f"{errno.errorcode.get(e, e)} ({os.strerror(e)})"


def netfilter_link(prog_fd: int, hooknum: int, priority: int) -> int:
    """bpf(BPF_LINK_CREATE) for a netfilter hook in the CALLER's current netns; returns the fd."""
    attr = (ctypes.c_uint32 * 16)()  # link_create: prog_fd, target_fd, attach_type, flags, nf{}
    attr[0] = prog_fd
    attr[2] = BPF_NETFILTER
    attr[4] = NFPROTO_IPV4
    attr[5] = hooknum
    attr[6] = ctypes.c_uint32(priority).value
    fd = _libc.syscall(SYS_BPF, BPF_LINK_CREATE, ctypes.byref(attr), ctypes.sizeof(attr))
    if fd < 0:
        raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))
    return int(fd)


def enable_stats() -> int:
    """BPF_ENABLE_STATS(run time): the stats stay on while the returned fd is open."""
    attr = (ctypes.c_uint32 * 2)()
    fd = _libc.syscall(SYS_BPF, BPF_ENABLE_STATS, ctypes.byref(attr), ctypes.sizeof(attr))
    if fd < 0:
        raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))
    return int(fd)


def prog_run_stats(prog_fd: int) -> tuple[int, int]:
    """(run_time_ns, run_cnt) of one loaded program, by its fd: counted only while stats are
    on (enable_stats). By fd, not by name: another tracer's programs have the same names."""
    info = ctypes.create_string_buffer(256)  # struct bpf_prog_info, zeroed: no arrays asked
    attr = ctypes.create_string_buffer(16)  # info: bpf_fd, info_len, info pointer
    struct.pack_into("<IIQ", attr, 0, prog_fd, len(info), ctypes.addressof(info))
    if _libc.syscall(SYS_BPF, BPF_OBJ_GET_INFO_BY_FD, attr, len(attr)) < 0:
        raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))
    run_time_ns, run_cnt = struct.unpack_from("<QQ", info, 192)
    return run_time_ns, run_cnt


def prog_test_run(prog_fd: int, data: bytes, ctx: bytes, repeat: int) -> tuple[int, int]:
    """bpf(BPF_PROG_TEST_RUN): the program's return value and its mean run time in ns over
    `repeat` runs on `data` with context `ctx` (a netfilter program: a packet, a hook state)."""
    din = ctypes.create_string_buffer(data, len(data))
    cin = ctypes.create_string_buffer(ctx, len(ctx))
    # attr.test: prog_fd, retval, data_size_in, data_size_out, data_in, data_out, repeat,
    # duration, ctx_size_in, ctx_size_out, ctx_in, ctx_out, flags, cpu, batch_size.
    attr = ctypes.create_string_buffer(80)
    struct.pack_into("<IIIIQQIIIIQQ", attr, 0, prog_fd, 0, len(data), 0, ctypes.addressof(din),
                     0, repeat, 0, len(ctx), 0, ctypes.addressof(cin), 0)
    if _libc.syscall(SYS_BPF, BPF_PROG_TEST_RUN, attr, len(attr)) < 0:
        raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))
    retval, duration = struct.unpack_from("<I", attr, 4)[0], struct.unpack_from("<I", attr, 36)[0]
    return retval, duration
