"""DockerNames: Swarm's own words for every hop, kept fresh from Docker's event stream.

Layered over NetnsNames: whatever Docker cannot name (or no longer can, after its daemon went
away) is still named from the netns files, or left as a raw address.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Self

from tracer.enrich.docker_daemons import DockerDaemons
from tracer.enrich.docker_events import DockerEvents
from tracer.enrich.docker_topology import DOCKER_GONE, DockerNode, NodeReading, merge_readings
from tracer.enrich.history import RANK_DOCKER, RANK_NODE_NETNS, NameHistory
from tracer.enrich.netns_names import NETNS_DIRS, NetnsNames, NetnsReader
from tracer.enrich.topology import Topology

log = logging.getLogger(__name__)

FULL_REFRESH_S = 30.0  # re-read Docker even without events, in case one was missed


class DockerNames(NetnsNames):
    """Names from one Docker client per node socket (default: every local dockerd)."""

    SOURCE_DOCKER = "docker"

    def __init__(self, sockets: list[str] | None = None, poll_s: float = 2.0,
                 history: NameHistory | None = None,
                 dirs: tuple[Path, ...] = NETNS_DIRS) -> None:
        self._daemons = DockerDaemons(sockets, self._connected, self._daemon_lost)
        self._events = DockerEvents(self._daemons)
        self._node_netns: dict[str, NetnsReader] = {}
        self._readings: dict[str, NodeReading] = {}
        self._last_full = float("-inf")
        self._merged = Topology()  # every node's last reading, merged
        self._node_inodes: set[int] = set()  # netns the nodes' files showed at the last poll
        self._mu = threading.Lock()  # the two above: the poll thread writes, lookups read
        super().__init__(dirs=dirs, poll_s=poll_s, history=history)

    @property
    def nodes(self) -> list[str]:
        """Names of the nodes currently connected."""
        return self._daemons.nodes

    def _connected(self, url: str, node: DockerNode) -> None:
        """A node (re)connected: read it at the next refresh, and its netns files from now."""
        self._events.mark_unread(url)
        self._node_netns[url] = node.netns_reader()

    def _daemon_lost(self, url: str) -> None:
        self._events.drop_stream(url)  # the daemon's stream went with it

    def refresh(self, ts_ns: int | None = None, reread_addresses: bool = False) -> None:
        """Re-read the netns layer, and every node that had events (or all, now and then)."""
        super().refresh(ts_ns, reread_addresses)
        now = time.monotonic()
        self._rediscover(now)
        full = now - self._last_full >= FULL_REFRESH_S
        if full:
            self._last_full = now
        changed_at: list[int] = []
        for url in self._daemons.urls:
            node = self._daemons.connect(url)
            if node is None:
                continue
            dirty = self._events.take(url)
            if dirty is None and not full:
                continue
            try:
                self._readings[url] = node.read()
            except DOCKER_GONE as err:
                self._daemons.lost(url, err)
                continue
            if dirty:
                changed_at.append(dirty)
        ts = ts_ns if ts_ns is not None else min(changed_at, default=time.monotonic_ns())
        topo = merge_readings(list(self._readings.values()))
        node_inodes: set[int] = set()
        for url, reader in list(self._node_netns.items()):
            node_topo = reader.read(reread_addresses, topo.netns)
            node_inodes |= node_topo.netns.keys()
            self.history.observe(f"netns:{url}", node_topo, ts, RANK_NODE_NETNS)
        with self._mu:
            self._merged, self._node_inodes = topo, node_inodes
        self._observe_docker(ts)

    def _observe_docker(self, ts: int) -> None:
        """Docker's names, but only of netns whose files are still there: a reading is kept
        while its daemon is away, and the kernel gives a dead netns's inode to the next one,
        which must not take the dead one's name."""
        with self._mu:
            topo, live = self._merged, self._node_inodes | self.file_inodes
        netns = {ino: ns for ino, ns in topo.netns.items() if ino in live}
        self.history.observe(self.SOURCE_DOCKER, replace(topo, netns=netns), ts, RANK_DOCKER)

    def read_now(self) -> None:
        super().read_now()
        self._observe_docker(time.monotonic_ns())

    def _rediscover(self, now: float) -> None:
        """Daemons gone for good take their readings along; new ones are followed."""
        gone, added = self._daemons.rediscover(now)
        for url in gone:
            self._node_netns.pop(url, None)
            self._readings.pop(url, None)
            self._events.take(url)  # and its unread mark
        if self._thread is not None:
            for url in added:
                self._events.follow(url)

    def start(self) -> Self:
        if self._thread is None:
            for url in self._daemons.urls:
                self._events.follow(url)
        super().start()
        return self

    def _poll(self) -> None:
        while not self._stop.is_set():
            self._events.wait(self.poll_s)
            if self._stop.is_set():
                return
            try:
                self.refresh()
            except Exception:  # a reader thread must not die silently and stop names
                log.exception("docker names refresh failed")

    def close(self) -> None:
        self._stop.set()
        self._events.close()
        super().close()
        self._daemons.close()
