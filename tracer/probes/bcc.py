"""The `bcc` backend: kprobes on IPVS and conntrack confirm, tracepoints for netns entry, drops
and the VXLAN crossing.

For stock distribution kernels (kprobes + headers). bcc is imported only here, lazily."""

from __future__ import annotations

import logging
import mmap
import os
import platform
import time
from pathlib import Path
from typing import Any

from tracer import privileges
from tracer.container_run import DEBUGFS, MODULES, SRC, read_only
from tracer.errors import ProbeUnavailable
from tracer.events import ip_to_raw, port_to_raw
from tracer.probes import bpf_source_dir, btf
from tracer.probes.base import ProbeSource
from tracer.probes.core import (
    CFG_ALL_PKTS,
    CFG_FILTER,
    CFG_READY,
    CFG_VXLAN,
    CNT_FILTERED,
    CNT_LOST,
)
from tracer.probes.ringbuf import RingReader
from tracer.source import Filter, SourceInfo, SourceStats

log = logging.getLogger(__name__)

RING_PAGES = 4096  # 16 MiB
# (kernel function, our handler): first name that exists wins (names differ across versions).
KPROBES = (
    (("__nf_conntrack_confirm",), "on_ct_confirm"),
    (("ip_vs_conn_new",), "on_ipvs_conn_new"),
)


# BCC's own search order for tracefs: its kprobe function list and tracepoint ids are there.
TRACEFS = (Path("/sys/kernel/debug/tracing"), Path("/sys/kernel/tracing"))
KHEADERS = Path("/sys/kernel/kheaders.tar.xz")  # BCC's fallback for a kernel without headers
# In a container (the image), the host's directories these come from, mounted as
# tracer/container_run.py mounts them.
MOUNT_DEBUGFS, MOUNT_MODULES, MOUNT_SRC = (" ".join(read_only(path))
                                           for path in (DEBUGFS, MODULES, SRC))


def missing_files(release: str) -> str:
    """What of the host's BCC needs is not there to read, in one line with the fix; '' if
    nothing. In a container these are mounts (the image); without them BCC fails late and
    unclearly: after seconds of LLVM, "Failed to attach" (no tracefs) or "Failed to compile"
    (no headers) with libbcc's own lines on stderr. Headers that are simply not installed
    are the doctor's to name."""
    if not any((t / "events").is_dir() for t in TRACEFS):
        return (f"the bcc backend finds kprobes and tracepoints in tracefs, which is not "
                f"mounted at {TRACEFS[0]}: mount -t debugfs none /sys/kernel/debug, or in a "
                f"container add {MOUNT_DEBUGFS}")
    modules = Path("/lib/modules") / release
    build = modules / "build"
    if build.is_dir() or KHEADERS.exists():
        return ""
    what = "the bcc backend compiles against this kernel's headers"
    if not modules.is_dir():
        return (f"{what}, and {modules} is missing: in a container add {MOUNT_MODULES} "
                f"{MOUNT_SRC}")
    if build.is_symlink():
        return (f"{what}, and {build} points to {os.readlink(build)}, which is missing: "
                f"in a container add {MOUNT_SRC}")
    return ""


def program_text() -> str:
    return (bpf_source_dir() / "bcc_probes.c").read_text()


def cflags() -> list[str]:
    return [f"-I{bpf_source_dir()}", f"-DRING_PAGES={RING_PAGES}"]


class BccSource(ProbeSource):
    """Live events from kprobes compiled by BCC against this kernel's headers."""

    def __init__(self, flt: Filter) -> None:
        if lacking := privileges.explain("bcc", privileges.current()):
            raise ProbeUnavailable(lacking)
        super().__init__()
        self.filter = flt
        self._bpf: Any = None
        self._notes: list[str] = []
        self.info = SourceInfo(backend="bcc", kernel=platform.release(), live=True)

    def _start(self) -> None:
        try:
            from bcc import BPF
        except ImportError as err:
            raise ProbeUnavailable(
                "BCC is not importable: install python3-bpfcc (scripts/setup does)") from err
        t0 = time.monotonic()
        try:
            self._bpf = BPF(text=program_text(), cflags=cflags())
        except Exception as err:
            raise ProbeUnavailable(f"BCC could not compile the probes: {err}") from err
        log.info("bcc: compiled in %.1f s", time.monotonic() - t0)
        self._configure()
        for names, fn in KPROBES:
            target = next((n for n in names if BPF.get_kprobe_functions(f"^{n}$".encode())), None)
            if target is None:
                what = "IPVS is not loaded (modprobe ip_vs)" if fn == "on_ipvs_conn_new" \
                    else f"none of {', '.join(names)} can be probed"
                self._notes.append(f"{what}: no {fn[3:]} events")
                continue
            self._bpf.attach_kprobe(event=target, fn_name=fn)
        ring = self._bpf["st_events"]
        self._reader = RingReader(ring.map_fd, RING_PAGES * mmap.PAGESIZE)
        self.info = SourceInfo(backend="bcc", kernel=platform.release(), live=True,
                               notes=tuple(self._notes), drop_reasons=btf.drop_reasons())

    def _configure(self) -> None:
        f = self.filter
        if f.expr:
            raise ProbeUnavailable("--filter is applied by the core backend's programs only: "
                                   "use --port/--addr with the bcc backend")
        ports, addrs = self._bpf["st_ports"], self._bpf["st_addrs"]
        for p in f.ports:
            ports[ports.Key(port_to_raw(p))] = ports.Leaf(1)
        for a in f.addrs:
            addrs[addrs.Key(ip_to_raw(a))] = addrs.Leaf(1)
        # Last: the programs emit nothing (and follow no flow) until the filter is complete.
        cfg = self._bpf["st_config"]
        leaf = cfg.Leaf()
        leaf.flags = CFG_READY | (CFG_FILTER if (f.ports or f.addrs) else 0) | \
            (CFG_ALL_PKTS if f.all_packets else 0) | (CFG_VXLAN if f.vxlan_port else 0)
        leaf.vxlan_port = port_to_raw(f.vxlan_port)
        cfg[cfg.Key(0)] = leaf

    def stats(self) -> SourceStats:
        return SourceStats(events=self._events, lost=self._total(CNT_LOST),
                           filtered=self._total(CNT_FILTERED))

    def lost(self) -> int:
        return self._total(CNT_LOST)

    def _total(self, idx: int) -> int:
        """One counter summed over the CPUs."""
        counters = self._bpf["st_counters"]
        return int(sum(counters[counters.Key(idx)]))

    def _detach(self) -> None:
        if self._bpf is not None:
            self._bpf.cleanup()
            self._bpf = None
