"""DockerNames: Swarm's own words for every hop, kept fresh from Docker's event stream.

Layered over NetnsNames: whatever Docker cannot name (or no longer can, after its daemon went
away) is still named from the netns files, or left as a raw address.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Self

from tracer.enrich.docker_topology import (
    DOCKER_GONE,
    DockerNode,
    NodeReading,
    local_docker_sockets,
    merge_readings,
)
from tracer.enrich.history import RANK_DOCKER, RANK_NODE_NETNS, NameHistory
from tracer.enrich.netns_names import NETNS_DIRS, NetnsNames, NetnsReader
from tracer.enrich.topology import Topology

log = logging.getLogger(__name__)

# Docker events that change names; exec_*, health_status, attach ... do not.
EVENT_ACTIONS = {
    "container": {"start", "die", "destroy", "rename"},
    "network": {"connect", "disconnect", "create", "destroy"},
    "service": {"create", "update", "remove"},
    "node": {"update", "remove"},
}
DEBOUNCE_S = 0.2  # one reading for a burst of events (a service update is a dozen)
FULL_REFRESH_S = 30.0  # re-read Docker even without events, in case one was missed
RECONNECT_S = 2.0
_PROC_PID = re.compile(r"unix:///proc/(\d+)/")


def mono_from_wall_ns(wall_ns: int) -> int:
    """Docker stamps events with wall-clock time; events from BPF use CLOCK_MONOTONIC."""
    return wall_ns - (time.time_ns() - time.monotonic_ns())


class DockerNames(NetnsNames):
    """Names from one Docker client per node socket (default: every local dockerd)."""

    SOURCE_DOCKER = "docker"

    def __init__(self, sockets: list[str] | None = None, poll_s: float = 2.0,
                 history: NameHistory | None = None,
                 dirs: tuple[Path, ...] = NETNS_DIRS) -> None:
        self.urls = list(sockets) if sockets is not None else local_docker_sockets()
        # Found by pid (/proc/<pid>/root/...): a restarted dockerd is at a new address.
        self._discover = sockets is None
        self._last_discover = time.monotonic()
        self._node_names: dict[str, str] = {}  # url -> node name, once it answered
        self._nodes: dict[str, DockerNode] = {}
        self._node_netns: dict[str, NetnsReader] = {}
        self._readings: dict[str, NodeReading] = {}
        self._dirty: dict[str, int] = {}  # url -> monotonic ns of the earliest unread event
        self._streams: dict[str, Any] = {}
        self._next_connect: dict[str, float] = {}
        self._last_full = float("-inf")
        self._away: dict[str, float] = {}  # url -> monotonic s it stopped answering
        self._mu = threading.Lock()
        self._merged = Topology()  # every node's last reading, merged
        self._node_inodes: set[int] = set()  # netns the nodes' files showed at the last poll
        self._connecting = threading.Lock()
        self._wake = threading.Event()
        self._watchers: list[threading.Thread] = []
        super().__init__(dirs=dirs, poll_s=poll_s, history=history)

    @property
    def nodes(self) -> list[str]:
        """Names of the nodes currently connected."""
        return [n.name for n in self._nodes.values()]

    def _lost(self, url: str, err: BaseException | str) -> None:
        with self._mu:
            node = self._nodes.pop(url, None)
            self._streams.pop(url, None)
            who = self._node_names.get(url, url)
            first = who not in self._away  # failed reconnects of the same outage stay quiet
            if first:
                self._away[who] = time.monotonic()
        if node is not None:
            node.close()
        if first:
            log.warning("Docker at %s is not answering (%s): names from netns files and raw "
                        "addresses until it is back", url, err)

    def _connect(self, url: str) -> DockerNode | None:
        """The node's client, (re)connecting at most every RECONNECT_S; None while it is gone."""
        with self._connecting:  # the poll thread and the url's event watcher both call this
            return self._connect_locked(url)

    def _connect_locked(self, url: str) -> DockerNode | None:
        with self._mu:
            node = self._nodes.get(url)
        if node is not None:
            return node
        if time.monotonic() < self._next_connect.get(url, 0.0):
            return None
        self._next_connect[url] = time.monotonic() + RECONNECT_S
        try:
            node = DockerNode(url)
        except DOCKER_GONE as err:
            self._lost(url, err)
            return None
        with self._mu:
            self._nodes[url] = node
            self._dirty.setdefault(url, 0)
            self._node_names[url] = node.name
            away = self._away.pop(node.name, None) or self._away.pop(url, None)
        self._node_netns[url] = node.netns_reader()
        if away is not None:  # the gap's end, as its start was said: both on stderr
            log.warning("Docker at %s (node %s) is back after %.0f s: names from Docker again",
                        url, node.name, time.monotonic() - away)
        log.info("Docker node %s at %s", node.name, url)
        return node

    def refresh(self, ts_ns: int | None = None, reread_addresses: bool = False) -> None:
        """Re-read the netns layer, and every node that had events (or all, now and then)."""
        super().refresh(ts_ns, reread_addresses)
        now = time.monotonic()
        if self._discover and self._away and now - self._last_discover >= RECONNECT_S:
            self._last_discover = now
            self._rediscover()
        full = now - self._last_full >= FULL_REFRESH_S
        if full:
            self._last_full = now
        changed_at: list[int] = []
        for url in self.urls:
            node = self._connect(url)
            if node is None:
                continue
            with self._mu:
                dirty = self._dirty.pop(url, None)
            if dirty is None and not full:
                continue
            try:
                self._readings[url] = node.read()
            except DOCKER_GONE as err:
                self._lost(url, err)
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

    def _rediscover(self) -> None:
        """While a node is away: drop the addresses of dockerds that are gone for good (their
        /proc/<pid> is), follow the ones that started since."""
        gone = [u for u in self.urls
                if (m := _PROC_PID.match(u)) and not os.path.exists(f"/proc/{m.group(1)}")]
        for url in gone:
            self.urls.remove(url)
            self._node_netns.pop(url, None)
            self._readings.pop(url, None)
            self._next_connect.pop(url, None)
            with self._mu:
                self._dirty.pop(url, None)
        for url in local_docker_sockets():
            if url not in self.urls:
                self.urls.append(url)
                if self._thread is not None:
                    self._follow(url)

    def _follow(self, url: str) -> None:
        t = threading.Thread(target=self._watch, args=(url,), name=f"docker-events {url}",
                             daemon=True)
        t.start()
        self._watchers.append(t)

    def start(self) -> Self:
        if self._thread is None:
            for url in self.urls:
                self._follow(url)
        super().start()
        return self

    def _poll(self) -> None:
        while not self._stop.is_set():
            if self._wake.wait(self.poll_s) and not self._stop.wait(DEBOUNCE_S):
                self._wake.clear()
            if self._stop.is_set():
                return
            try:
                self.refresh()
            except Exception:  # a reader thread must not die silently and stop names
                log.exception("docker names refresh failed")

    def _watch(self, url: str) -> None:
        """Follow one daemon's event stream; mark the node dirty on events that change names."""
        since = int(time.time()) - 1  # events between the first reading and now
        while not self._stop.is_set() and url in self.urls:
            node = self._connect(url)
            if node is None:
                self._stop.wait(RECONNECT_S)
                continue
            stream = None
            try:
                stream = node.client.events(decode=True, since=since,
                                            filters={"type": list(EVENT_ACTIONS)})
                with self._mu:
                    self._streams[url] = stream
                for ev in stream:
                    since = int(ev.get("time", since))
                    if ev.get("Action") in EVENT_ACTIONS.get(ev.get("Type", ""), ()):
                        ts = mono_from_wall_ns(int(ev.get("timeNano", time.time_ns())))
                        with self._mu:
                            self._dirty[url] = min(self._dirty.get(url) or ts, ts)
                        self._wake.set()
            except DOCKER_GONE as err:
                if not self._stop.is_set():
                    self._lost(url, err)
                continue
            finally:
                if stream is not None:  # its socket now, not when the collector finds it
                    _close_stream(stream)
            if not self._stop.is_set():  # the stream ended: the daemon went away
                self._lost(url, "event stream ended")

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
        with self._mu:
            streams = list(self._streams.values())
        for s in streams:
            _close_stream(s)
        for t in self._watchers:
            t.join(timeout=5)
        self._watchers.clear()
        super().close()
        with self._mu:
            nodes = list(self._nodes.values())
            self._nodes.clear()
        for n in nodes:
            n.close()


def _close_stream(stream: Any) -> None:
    try:
        stream.close()
    except Exception:  # closing a dead connection: nothing left to release
        log.debug("closing an event stream failed", exc_info=True)
