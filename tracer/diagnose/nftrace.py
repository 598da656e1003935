"""Which nftables rule dropped a watched packet, from the kernel's own trace events.

Opt-in (`trace --nftrace`), because it adds rules: in every netns whose iptables are
iptables-nft (nf_tables holds an `ip` table there), a table of our own marks the watched flows
with `meta nftrace set 1` before anything else sees them (priority -350, before raw). The
kernel then reports each rule and policy verdict those packets meet as an NFT_MSG_TRACE
message on the NFNLGRP_NFTRACE netlink group of that netns; a DROP names table, chain and rule
handle, turned into the rule's text with `nft -a list chain` and, for iptables-nft rules, the
iptables-save line at the same place in the chain. The tables are deleted again on the way out,
also on failure.

iptables-legacy has no such events: its TRACE target writes through nf_log to a logger, so a
legacy drop keeps the rule counters' attribution (rule_counters.py)."""

from __future__ import annotations

import errno
import os
import select
import socket
import struct
import subprocess
import threading
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tracer.enrich.nsenter import entered, run_in
from tracer.errors import FilterError
from tracer.events import Flow
from tracer.source import Filter

_NETLINK_NETFILTER = 12
_SOL_NETLINK = 270
_NETLINK_ADD_MEMBERSHIP = 1
_NFNLGRP_NFTRACE = 9
_NFT_MSG_TRACE = (10 << 8) | 17  # NFNL_SUBSYS_NFTABLES, NFT_MSG_TRACE
# enum nft_trace_attributes (linux/netfilter/nf_tables.h)
_TABLE, _CHAIN, _RULE_HANDLE, _TYPE, _VERDICT, _ID = 1, 2, 3, 4, 5, 6
_NETWORK_HEADER, _TRANSPORT_HEADER, _POLICY = 8, 9, 16
_VERDICT_CODE = 1  # NFTA_VERDICT_CODE, inside NFTA_TRACE_VERDICT
_TRACETYPE_POLICY, _TRACETYPE_RULE = 1, 3
_NF_DROP = 0
_FAMILY = {2: "ip", 10: "ip6", 1: "inet", 7: "bridge", 5: "netdev", 3: "arp"}
# Before raw (-300) and conntrack (-200): the mark is on the packet before any rule decides.
PRIORITY = -350
KEEP = 1024  # drop events kept; a verdict asks about the last seconds only
NFT_TIMEOUT_S = 10
TABLE_PREFIX = "swarmtrace_"  # + the pid: two tracers on one host keep their own tables


@dataclass(frozen=True)
class TraceDrop:
    """One DROP verdict the kernel traced: where, by what, when (CLOCK_MONOTONIC ns)."""

    netns: int  # inode
    ts_ns: int
    family: str
    table: str
    chain: str
    handle: int  # 0: the chain's policy
    flow: str  # "tcp 192.168.100.2:40000 > 10.0.0.2:8080", from the traced headers


def parse(msg: bytes, netns: int, ts_ns: int, flows: dict[int, str]) -> list[TraceDrop]:
    """The DROP verdicts in a buffer of netlink messages (other trace events are skipped).

    The kernel sends a packet's headers with its first trace event only; flows (trace id ->
    flow) carries them over to the packet's later events, across buffers."""
    out = []
    off = 0
    while off + 16 <= len(msg):
        length, kind = struct.unpack_from("=IH", msg, off)
        if length < 16:
            break
        if kind == _NFT_MSG_TRACE and length >= 20:
            a = _attrs(msg[off + 20:off + length])
            trace_id = struct.unpack("!I", a[_ID])[0] if len(a.get(_ID, b"")) == 4 else 0
            if _NETWORK_HEADER in a:
                if len(flows) >= KEEP:
                    flows.clear()
                flows[trace_id] = _flow(a[_NETWORK_HEADER], a.get(_TRANSPORT_HEADER, b""))
            drop = _drop(a, msg[off + 16], netns, ts_ns, flows.get(trace_id, ""))
            if drop is not None:
                out.append(drop)
        off += (length + 3) & ~3
    return out


def _attrs(buf: bytes) -> dict[int, bytes]:
    out = {}
    off = 0
    while off + 4 <= len(buf):
        length, kind = struct.unpack_from("=HH", buf, off)
        if length < 4:
            break
        out[kind & 0x3FFF] = buf[off + 4:off + length]  # without the nested/byteorder flags
        off += (length + 3) & ~3
    return out


def _drop(a: dict[int, bytes], family: int, netns: int, ts_ns: int,
          flow: str) -> TraceDrop | None:
    kind = struct.unpack("!I", a[_TYPE])[0] if len(a.get(_TYPE, b"")) == 4 else 0
    if kind == _TRACETYPE_RULE:
        code = _attrs(a.get(_VERDICT, b"")).get(_VERDICT_CODE, b"")
        dropped = len(code) == 4 and struct.unpack("!i", code)[0] == _NF_DROP
    elif kind == _TRACETYPE_POLICY:
        dropped = a.get(_POLICY, b"") == struct.pack("!I", _NF_DROP)
    else:
        return None
    if not dropped:
        return None
    handle = struct.unpack("!Q", a[_RULE_HANDLE])[0] \
        if kind == _TRACETYPE_RULE and len(a.get(_RULE_HANDLE, b"")) == 8 else 0
    return TraceDrop(netns, ts_ns, _FAMILY.get(family, str(family)),
                     a.get(_TABLE, b"").rstrip(b"\0").decode(errors="replace"),
                     a.get(_CHAIN, b"").rstrip(b"\0").decode(errors="replace"), handle, flow)


def _flow(net: bytes, transport: bytes) -> str:
    if len(net) < 20 or net[0] >> 4 != 4:
        return ""
    proto = {6: "tcp", 17: "udp", 1: "icmp"}.get(net[9], str(net[9]))
    src, dst = socket.inet_ntoa(net[12:16]), socket.inet_ntoa(net[16:20])
    if proto in ("tcp", "udp") and len(transport) >= 4:
        sport, dport = struct.unpack_from("!HH", transport)
        return flow_text(proto, Flow(src, sport, dst, dport))
    return f"{proto} {src} > {dst}"


def flow_text(proto: str, f: Flow) -> str:
    """A TCP/UDP flow as TraceDrop.flow writes it."""
    return f"{proto} {f.saddr}:{f.sport} > {f.daddr}:{f.dport}"


def ruleset(flt: Filter, table: str) -> str:
    """`nft -f` input: the table that marks the watched flows for tracing."""
    marks = []
    if flt.ports:
        ports = ", ".join(map(str, flt.ports))
        marks += [f"tcp dport {{ {ports} }} meta nftrace set 1",
                  f"udp dport {{ {ports} }} meta nftrace set 1"]
    if flt.addrs:
        marks.append(f"ip daddr {{ {', '.join(flt.addrs)} }} meta nftrace set 1")
    chains = "".join(
        f"  chain {hook} {{\n    type filter hook {hook} priority {PRIORITY}; policy accept;\n"
        + "".join(f"    {m}\n" for m in marks) + "  }\n" for hook in ("prerouting", "output"))
    return f"table ip {table} {{\n{chains}}}\n"


def _nft(netns: Path, *argv: str, stdin: str | None = None
         ) -> subprocess.CompletedProcess[str] | None:
    return run_in(netns, ["nft", *argv], stdin, NFT_TIMEOUT_S)


def uses_nftables(netns: Path) -> bool:
    """iptables-nft (or nft) rules are in this netns: an `ip` table of nf_tables exists."""
    res = _nft(netns, "list", "tables", "ip")
    return res is not None and res.returncode == 0 and any(
        line.startswith("table ip ") for line in res.stdout.splitlines())


def rule_text(netns: Path, d: TraceDrop) -> str:
    """'table ip filter, chain DOCKER-USER, rule 7: <nft text> (iptables: -A ...)'."""
    where = f"nftables trace: table {d.family} {d.table}, chain {d.chain}"
    if not d.handle:
        return f"{where}, policy drop"
    res = _nft(netns, "-a", "-s", "list", "chain", d.family, d.table, d.chain)
    if res is None:
        return f"{where}, rule handle {d.handle}"
    rules = [line.strip() for line in res.stdout.splitlines() if "# handle " in line
             and not line.strip().startswith(("chain ", "table "))]
    mark = f"# handle {d.handle}"
    index = next((i for i, r in enumerate(rules) if r.endswith(mark)), None)
    if index is None:
        return f"{where}, rule handle {d.handle} (gone)"
    text = f"{where}, rule handle {d.handle}: {rules[index].removesuffix(mark).strip()}"
    legacy_text = _iptables_line(netns, d, index)
    return f"{text} (iptables: {legacy_text})" if legacy_text else text


def _iptables_line(netns: Path, d: TraceDrop, index: int) -> str:
    """The iptables-nft rule at the same place in the chain: how the user wrote it."""
    if d.family != "ip":
        return ""
    res = run_in(netns, ["iptables-nft-save", "-t", d.table], timeout_s=NFT_TIMEOUT_S)
    if res is None:
        return ""
    lines = [line for line in res.stdout.splitlines() if line.startswith(f"-A {d.chain} ")]
    return lines[index] if index < len(lines) else ""


def check_filter(flt: Filter) -> None:
    """Tracing every packet would flood the netlink group: only the watched flows."""
    if not (flt.ports or flt.addrs):
        raise FilterError("--nftrace traces the watched flows only: give --port, --addr "
                          "or --service")


def remove_stale(netns: Path) -> None:
    """Trace tables of a swarmtrace that was killed before it could remove them."""
    res = _nft(netns, "list", "tables", "ip")
    if res is None:
        return
    for line in res.stdout.splitlines():
        name = line.removeprefix("table ip ")
        pid = name.removeprefix(f"{TABLE_PREFIX}")
        if name != line and name != pid and pid.isdigit() and not Path(f"/proc/{pid}").exists():
            _nft(netns, "delete", "table", "ip", name)


class NfTrace:
    """Trace tables added and their events read in each given netns, until close()."""

    def __init__(self, flt: Filter, netns: dict[int, Path]) -> None:
        check_filter(flt)
        self.table = f"{TABLE_PREFIX}{os.getpid()}"
        self._flt = flt
        self._paths: dict[int, Path] = {}
        self._socks: dict[socket.socket, int] = {}
        self._drops: deque[TraceDrop] = deque(maxlen=KEEP)
        self._texts: dict[TraceDrop, str] = {}
        self._flows: dict[int, str] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, name="nftrace", daemon=True)
        try:
            for ino, path in netns.items():
                if uses_nftables(path):
                    remove_stale(path)
                    self._add(ino, path)
        except BaseException:
            self.close()
            raise
        self._thread.start()

    @property
    def netns(self) -> list[Path]:
        return list(self._paths.values())

    def _add(self, ino: int, path: Path) -> None:
        # The socket first: no event of the new table's marks is missed.
        with entered(path):
            sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, _NETLINK_NETFILTER)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
            sock.bind((0, 0))
            sock.setsockopt(_SOL_NETLINK, _NETLINK_ADD_MEMBERSHIP, _NFNLGRP_NFTRACE)
        except OSError:
            sock.close()
            raise
        self._socks[sock] = ino
        res = _nft(path, "-f", "-", stdin=ruleset(self._flt, self.table))
        if res is None or res.returncode != 0:
            why = res.stderr.strip() if res is not None else \
                f"nft did not run or took over {NFT_TIMEOUT_S} s"
            raise FilterError(f"--nftrace: cannot add table ip {self.table} in {path}: {why}")
        self._paths[ino] = path

    def _read(self) -> None:
        while not self._stop.is_set():
            ready = select.select(list(self._socks), [], [], 0.2)[0]
            for sock in ready:
                try:
                    buf = sock.recv(1 << 16)
                except OSError as err:
                    if err.errno == errno.ENOBUFS:  # overrun: later events still come
                        continue
                    raise
                drops = parse(buf, self._socks[sock], time.monotonic_ns(), self._flows)
                for d in drops:
                    # Named now: the rule may be gone by the time the request ends.
                    key = TraceDrop(d.netns, 0, d.family, d.table, d.chain, d.handle, "")
                    if key not in self._texts:
                        self._texts[key] = rule_text(self._paths.get(d.netns, Path()), d)
                with self._lock:
                    self._drops.extend(drops)

    def dropped_since(self, netns_inode: int, start_ns: int, proto: str,
                      flows: frozenset[Flow]) -> list[str]:
        """The rules (or policies) that dropped packets of flows (a request's tuples, either
        direction) in netns since start_ns. A drop whose headers were not seen (its first
        trace event lost) counts by netns and time alone."""
        keys = {flow_text(proto, f) for f in flows} | \
            {flow_text(proto, f.reversed()) for f in flows}
        with self._lock:
            drops = [d for d in self._drops if d.netns == netns_inode and d.ts_ns >= start_ns
                     and (not d.flow or d.flow in keys)]
        names: list[str] = []
        for d in drops:
            key = TraceDrop(d.netns, 0, d.family, d.table, d.chain, d.handle, "")
            text = self._texts.get(key, "")
            if text and text not in names:
                names.append(text)
        return names

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        for path in self._paths.values():
            _nft(path, "delete", "table", "ip", self.table)
        self._paths.clear()
        for sock in self._socks:
            sock.close()
        self._socks.clear()


@contextmanager
def nftrace(flt: Filter, netns: dict[int, Path]) -> Iterator[NfTrace]:
    tracer = NfTrace(flt, netns)
    try:
        yield tracer
    finally:
        tracer.close()
