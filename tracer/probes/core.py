"""The `core` backend: CO-RE programs on BPF netfilter hooks (per netns) and BTF tracepoints."""

from __future__ import annotations

import errno
import logging
import os
import platform
import re
import struct
import time
from pathlib import Path

import numpy as np

from tracer import privileges
from tracer.errors import ProbeUnavailable
from tracer.events import ip_to_raw, port_to_raw
from tracer.pcap_filter import compile_rules
from tracer.probes import bpf_object_path, btf, libbpf, netns
from tracer.probes.base import ProbeSource
from tracer.probes.ringbuf import RingReader
from tracer.source import Filter, SourceInfo, SourceStats

log = logging.getLogger(__name__)

# event.h: st_config flags and st_counter indexes
CFG_FILTER, CFG_ALL_PKTS, CFG_DEVICES, CFG_READY, CFG_VXLAN = 0x01, 0x02, 0x04, 0x08, 0x10
CNT_EMITTED, CNT_LOST, CNT_FILTERED, CNT_MAX = 0, 1, 2, 4

# (hook number, priority): after mangle (-150) and DNAT (-100) on the way in and out,
# after SNAT (100) on the way out, so each event shows the decision already taken.
NF_HOOKS = ((0, -90), (3, -90), (4, 110))
# Priorities tried after a busy one: -90..-81 stay after DNAT (-100), 110..119 after SNAT (100).
NF_PRIO_TRIES = 10
NETNS_RESCAN_S = 0.5
# The kernel side wakes the reader only on a backlog (see submit() in core.bpf.c): poll at
# least this often so a few events are not left waiting.
MAX_WAIT_S = 0.1
PROC_RESCAN_S = 5.0
RING_BYTES = 16 << 20
PORT_BYTES = 65536 // 8  # ST_PORT_BYTES in core.bpf.c


def port_bits(ports: tuple[int, ...]) -> bytes:
    """st_ports' one entry: bit (raw & 7) of byte (raw >> 3) per port, raw as the kernel has it."""
    bits = bytearray(PORT_BYTES)
    for p in ports:
        raw = port_to_raw(p)
        bits[raw >> 3] |= 1 << (raw & 7)
    return bytes(bits)


def kernel_at_least(major: int, minor: int) -> bool:
    m = re.match(r"(\d+)\.(\d+)", platform.release())
    return m is not None and (int(m.group(1)), int(m.group(2))) >= (major, minor)


def check_capabilities() -> None:
    # Capabilities, not uid 0: a container with --cap-add or a setcap'd binary traces too.
    if lacking := privileges.explain("core", privileges.current()):
        raise ProbeUnavailable(lacking)
    if not Path("/sys/kernel/btf/vmlinux").exists():
        raise ProbeUnavailable(
            "this kernel has no BTF (/sys/kernel/btf/vmlinux): use --backend bcc where kernel "
            "headers are installed"
        )


def configure(obj: libbpf.BpfObject, f: Filter, netfilter: bool) -> bool:
    """Fill the loaded object's filter maps for `f`; whether device crossings (rx/tx) are
    traced (always without netfilter programs)."""
    flags = (CFG_FILTER if (f.ports or f.addrs or f.expr) else 0)
    flags |= CFG_ALL_PKTS if f.all_packets else 0
    flags |= CFG_DEVICES if f.devices or not netfilter else 0
    flags |= CFG_VXLAN if f.vxlan_port else 0
    obj.map_update(obj.map_fd("st_config"), struct.pack("<I", 0),
                   struct.pack("<IHH", flags, port_to_raw(f.vxlan_port), 0))
    obj.map_update(obj.map_fd("st_ports"), struct.pack("<I", 0), port_bits(f.ports))
    addrs_fd = obj.map_fd("st_addrs")
    for a in f.addrs:
        obj.map_update(addrs_fd, struct.pack("<I", ip_to_raw(a)), b"\x01")
    rules_fd = obj.map_fd("st_rules")
    for i, r in enumerate(compile_rules(f.expr) if f.expr else ()):
        # struct st_rule: saddr, daddr, sport, dport (network order), proto, used.
        rule = struct.pack("<IIHHBBxx", ip_to_raw(r.saddr) if r.saddr else 0,
                           ip_to_raw(r.daddr) if r.daddr else 0,
                           port_to_raw(r.sport), port_to_raw(r.dport), r.proto, 1)
        obj.map_update(rules_fd, struct.pack("<I", i), rule)
    return bool(flags & CFG_DEVICES)


def per_cpu_counter(obj: libbpf.BpfObject, idx: int, ncpu: int) -> tuple[int, ...]:
    """One st_counters counter's value on each CPU (one map lookup)."""
    raw = obj.map_lookup(obj.map_fd("st_counters"), struct.pack("<I", idx), 8 * ncpu)
    return struct.unpack(f"<{ncpu}Q", raw) if raw else (0,) * ncpu


def _link_hooks(prog_fd: int) -> list[int]:
    """Link the program at every hook of NF_HOOKS in the current netns; all or none.

    The kernel takes one BPF program per hook and priority (EBUSY): a second tracer (another
    swarmtrace, another tool) takes the next free priority, which sees the same packets.
    """
    fds: list[int] = []
    try:
        for hook, prio in NF_HOOKS:
            for shift in range(NF_PRIO_TRIES):
                try:
                    fds.append(libbpf.netfilter_link(prog_fd, hook, prio + shift))
                    break
                except OSError as err:
                    if err.errno != errno.EBUSY or shift == NF_PRIO_TRIES - 1:
                        raise
    except OSError:
        for fd in fds:
            os.close(fd)
        raise
    return fds


class CoreSource(ProbeSource):
    """Live events from the running kernel via the CO-RE object."""

    def __init__(self, flt: Filter, ring_bytes: int = RING_BYTES,
                 netfilter: bool | None = None, scope: netns.NetnsScope | None = None) -> None:
        check_capabilities()
        super().__init__()
        self.filter = flt
        self.scope = scope  # hook only these netns (one node of a shared kernel)
        self._obj = libbpf.BpfObject(bpf_object_path())
        self._obj.set_max_entries("st_events", ring_bytes)
        # BPF netfilter programs exist since 6.4; before, device tracepoints carry the
        # conntrack view (tx, in the sending netns) instead.
        self.netfilter = kernel_at_least(6, 4) if netfilter is None else netfilter
        if self.netfilter:
            self._obj.make_netfilter("st_nf_hook")
        else:
            self._obj.set_autoload("st_nf_hook", False)
        self._ring_bytes = ring_bytes
        self._nf_links: dict[int, list[int]] = {}  # netns inode -> link fds
        self._nf_failed: set[int] = set()  # not tried again while their netns is there
        self._devices = False  # st_rx and st_tx attached
        self._last_scan = self._last_proc_scan = 0.0
        self._notes: list[str] = []
        self.info = SourceInfo(backend="core", kernel=platform.release(), live=True)

    def _start(self) -> None:
        self._obj.load()
        devices = configure(self._obj, self.filter, self.netfilter)
        self._obj.attach("st_drop")
        # A device tracepoint runs for every packet of the machine even when it only returns:
        # attached only when device crossings are wanted, or once Docker's overlays can carry
        # a request between nodes (the observed VXLAN crossing is read there; each netns
        # rescan looks again, so an overlay made after start is observed too).
        if devices or self._overlay_appeared():
            self._attach_devices()
        if self.netfilter:
            self._scan_netns(force_proc=True)
        else:
            self._notes.append("no BPF netfilter programs before Linux 6.4: tracing device "
                               "crossings with conntrack instead (less detail; IPVS balancing "
                               "a client in its own netns is invisible, Docker's lb_<network> "
                               "is not; --backend bcc sees both)")
        self._reader = RingReader(self._obj.map_fd("st_events"), self._ring_bytes)
        self.info = SourceInfo(backend="core", kernel=platform.release(), live=True,
                               notes=tuple(self._notes), drop_reasons=btf.drop_reasons())

    def _overlay_appeared(self) -> bool:
        return bool(self.filter.vxlan_port) and netns.overlays_present(self.scope)

    def _attach_devices(self) -> None:
        for prog in ("st_rx", "st_tx"):
            self._obj.attach(prog)
        self._devices = True

    def _scan_netns(self, force_proc: bool = False) -> None:
        now = time.monotonic()
        scan_proc = force_proc or now - self._last_proc_scan >= PROC_RESCAN_S
        self._last_scan = now
        if scan_proc:
            self._last_proc_scan = now
        seen = netns.discover(scan_proc=scan_proc, scope=self.scope)
        # The kernel gives a new netns the inode of one that died: a failure (often a netns
        # that vanished as we entered it) is forgotten once its inode is gone, or its
        # successor would never be hooked.
        self._nf_failed &= seen.keys()
        if not self._devices and self._overlay_appeared():
            self._attach_devices()
            log.info("a Docker overlay appeared: reading the VXLAN crossing from now on")
        prog_fd = self._obj.prog_fd("st_nf_hook")
        for ino, path in seen.items():
            if ino in self._nf_links or ino in self._nf_failed:
                continue
            try:
                with netns.entered(path):
                    fds = _link_hooks(prog_fd)
            except OSError as err:
                # A netns that vanished between listing and entering, or no netfilter links.
                self._nf_failed.add(ino)
                log.debug("netns %s (%d): %s", path, ino, err)
                continue
            self._nf_links[ino] = fds
            log.debug("hooked netns %s (%d)", path, ino)
        if not scan_proc:
            return
        for ino in [i for i in self._nf_links if i not in seen]:
            for fd in self._nf_links.pop(ino):
                os.close(fd)

    def poll(self, timeout_s: float) -> np.ndarray:
        if self.netfilter and time.monotonic() - self._last_scan >= NETNS_RESCAN_S:
            self._scan_netns()
        return super().poll(min(timeout_s, MAX_WAIT_S))

    def stats(self) -> SourceStats:
        ncpu = os.cpu_count() or 1
        per_cpu = [per_cpu_counter(self._obj, idx, ncpu) for idx in range(CNT_MAX)]
        # Per CPU: which CPU's producers found the ring full, and what each offered.
        extra = {"netns_hooked": len(self._nf_links), "device_tracepoints": int(self._devices)}
        for cpu in range(ncpu):
            extra[f"lost_cpu{cpu}"] = per_cpu[CNT_LOST][cpu]
            extra[f"emitted_cpu{cpu}"] = per_cpu[CNT_EMITTED][cpu]
        return SourceStats(events=self._events, lost=sum(per_cpu[CNT_LOST]),
                           filtered=sum(per_cpu[CNT_FILTERED]), extra=extra)

    def lost(self) -> int:
        return sum(per_cpu_counter(self._obj, CNT_LOST, os.cpu_count() or 1))

    def run_stats(self) -> dict[str, tuple[int, int]]:
        """This source's attached programs: name -> (run_time_ns, run_cnt) (benchmarks)."""
        names = ["st_drop"] + ["st_nf_hook"] * self.netfilter + ["st_rx", "st_tx"] * self._devices
        return {n: libbpf.prog_run_stats(self._obj.prog_fd(n)) for n in names}

    def _detach(self) -> None:
        for fds in self._nf_links.values():
            for fd in fds:
                os.close(fd)
        self._nf_links.clear()
        self._obj.close()
