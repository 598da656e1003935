"""Names without Docker: netns files by inode, and the addresses that live in each netns."""

from __future__ import annotations

import logging
import re
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import Self

from pyroute2 import IPRoute

from tracer.enrich.history import KEEP_CLOSED_NS, RANK_NETNS, NameHistory, RecordedNames
from tracer.enrich.names import AddrName, NetnsKind, NetnsName
from tracer.enrich.nsenter import entered
from tracer.enrich.topology import Topology

log = logging.getLogger(__name__)

LAB_PREFIX = "stlab-"  # the labs' netns names; shown without it ("stlab-node2" -> "node2")
NETNS_DIRS = (Path("/var/run/netns"), Path("/var/run/docker/netns"))
ROOT_NETNS = Path("/proc/self/ns/net")
_RT_SCOPE_UNIVERSE = 0  # skip host (127.0.0.1, ::1) and link (fe80::) scoped addresses
_OVERLAY_NS = re.compile(r"^\d+-")
_SANDBOX_ID = re.compile(r"^[0-9a-f]{12}$")


def nsfs_inode(path: Path) -> int | None:
    """The netns inode behind a netns file, or None if nothing is mounted there."""
    try:
        st = path.stat()
        # An unmounted netns file is an empty file of its directory's filesystem.
        return st.st_ino if st.st_dev == ROOT_NETNS.stat().st_dev else None
    except OSError:
        return None


def classify(file_name: str) -> tuple[str, NetnsKind]:
    """Name and kind of a netns from its file name (Docker's and the labs' conventions)."""
    name = file_name.removeprefix(LAB_PREFIX)
    if name in ("host", "ingress_sbox"):
        return name, name  # type: ignore[return-value]
    if name.startswith("lb_"):
        return name, "lb"
    if _OVERLAY_NS.match(name):
        return name, "overlay"
    if _SANDBOX_ID.match(name):
        return name, "container"
    return name, "named"


def netns_addresses(path: Path | None) -> list[str]:
    """Global-scope addresses configured in a netns (None: this thread's netns)."""
    try:
        with entered(path):
            ipr = IPRoute()
        with ipr:
            return [m.get("IFA_ADDRESS") for m in ipr.get_addr()
                    if m["scope"] == _RT_SCOPE_UNIVERSE and m.get("IFA_ADDRESS")]
    except OSError as err:  # the netns went away while we looked
        log.debug("cannot read addresses of %s: %s", path, err)
        return []


class NetnsReader:
    """Reads a Topology from netns directories; addresses are read once per new netns."""

    def __init__(self, dirs: tuple[Path, ...] = NETNS_DIRS, node: str | None = None,
                 root: Path | None = ROOT_NETNS) -> None:
        self.dirs = dirs
        self.node = node
        self.root = root  # the netns called "host" (None: the node has no host netns of ours)
        self._addr_cache: dict[int, list[str]] = {}

    def read(self, reread_addresses: bool = False,
             names: dict[int, NetnsName] | None = None) -> Topology:
        """names: better names by inode (Docker's), used for the addresses found there."""
        if reread_addresses:
            self._addr_cache.clear()
        found: list[tuple[int, NetnsName, Path | None]] = []
        for d in self.dirs:
            try:
                entries = sorted(d.iterdir())
            except OSError:
                continue
            for path in entries:
                inode = nsfs_inode(path)
                if inode is not None:
                    name, kind = classify(path.name)
                    ns = (names or {}).get(inode) or NetnsName(name, kind, self.node)
                    found.append((inode, ns, path))
        if self.root is not None and (inode := nsfs_inode(self.root)) is not None:
            # Last, so that an address living in a named netns names that netns.
            found.append((inode, NetnsName("host", "host", self.node),
                          None if self.root == ROOT_NETNS else self.root))
        netns: dict[int, NetnsName] = {}
        addrs: dict[str, AddrName] = {}
        for inode, ns, ns_path in found:
            netns.setdefault(inode, ns)
            if inode not in self._addr_cache:
                self._addr_cache[inode] = netns_addresses(ns_path)
            for ip in self._addr_cache[inode]:
                addrs.setdefault(ip, AddrName("sandbox", node=self.node, netns=ns.name))
        for gone in set(self._addr_cache) - set(netns):
            del self._addr_cache[gone]
        return Topology(netns=netns, addrs=addrs)


class NetnsNames(RecordedNames):
    """Names from /var/run/netns and /var/run/docker/netns, kept fresh by polling.

    Used as is where there is no Docker, and as the bottom layer under DockerNames.
    """

    SOURCE = "netns"

    def __init__(self, dirs: tuple[Path, ...] = NETNS_DIRS, poll_s: float = 2.0,
                 history: NameHistory | None = None) -> None:
        # Live: bounded, an agent runs for days.
        super().__init__(history if history is not None else NameHistory(KEEP_CLOSED_NS))
        self.reader = NetnsReader(dirs)
        self.poll_s = poll_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._reading = threading.Lock()  # the poll thread and lookups both read the files
        self._last_read_ns = 0
        self.file_inodes: set[int] = set()  # netns the last reading found
        self._asked: set[int] = set()  # unknown inodes a lookup read the files for, this poll
        # What exists before tracing starts counts as "since ever" (ts 0).
        self.refresh(ts_ns=0)

    def refresh(self, ts_ns: int | None = None, reread_addresses: bool = False) -> None:
        self._asked.clear()
        self._read_files(ts_ns, reread_addresses)

    def _read_files(self, ts_ns: int | None, reread_addresses: bool) -> None:
        with self._reading:
            topo = self.reader.read(reread_addresses)
            ts = time.monotonic_ns() if ts_ns is None else ts_ns
            # A netns first seen now was made since the last reading: named from then on.
            self.history.observe(self.SOURCE, topo, ts, RANK_NETNS,
                                 new_since=min(self._last_read_ns, ts))
            self._last_read_ns = ts
            self.file_inodes = set(topo.netns)

    def read_now(self) -> None:
        """A lookup's reading between polls (DockerNames also drops names of dead netns)."""
        self._read_files(None, False)

    def netns(self, inode: int, ts_ns: int) -> NetnsName | None:
        # The probes hook a new netns within a second, the poll reads names every poll_s: a
        # netns that is younger than the last reading (or that reused a dead one's inode) is
        # looked up in the files now, once per poll, rather than shown raw or as the dead one.
        if (self._thread is not None and inode not in self._asked
                and not self.history.known_at("netns", inode, ts_ns, RANK_NETNS)):
            self._asked.add(inode)
            self.read_now()
        return super().netns(inode, ts_ns)

    def start(self) -> Self:
        if self._thread is None:
            self._thread = threading.Thread(target=self._poll, name="netns-names", daemon=True)
            self._thread.start()
        return self

    def _poll(self) -> None:
        while not self._stop.wait(self.poll_s):
            try:
                self.refresh()
            except Exception:  # a reader thread must not die silently and stop names
                log.exception("netns names refresh failed")

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

