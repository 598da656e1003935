"""The dockerds names are read from: found, connected (again at most every RECONNECT_S), and
each outage said once when it starts and once when it ends."""

from __future__ import annotations

import logging
import os
import re
import threading
import time
from collections.abc import Callable

from tracer.enrich.docker_topology import DOCKER_GONE, DockerNode, local_docker_sockets

log = logging.getLogger(__name__)

RECONNECT_S = 2.0
_PROC_PID = re.compile(r"unix:///proc/(\d+)/")


class DockerDaemons:
    """A DockerNode per daemon url (default: every local dockerd, found again after one
    restarts); on_connect(url, node) runs at each (re)connection, on_lost(url) at each loss."""

    def __init__(self, sockets: list[str] | None,
                 on_connect: Callable[[str, DockerNode], None],
                 on_lost: Callable[[str], None]) -> None:
        self.urls = list(sockets) if sockets is not None else local_docker_sockets()
        # Found by pid (/proc/<pid>/root/...): a restarted dockerd is at a new address.
        self._discover = sockets is None
        self._last_discover = time.monotonic()
        self._on_connect, self._on_lost = on_connect, on_lost
        self._node_names: dict[str, str] = {}  # url -> node name, once it answered
        self._nodes: dict[str, DockerNode] = {}
        self._next_connect: dict[str, float] = {}
        self._away: dict[str, float] = {}  # url -> monotonic s it stopped answering
        self._mu = threading.Lock()
        self._connecting = threading.Lock()

    @property
    def nodes(self) -> list[str]:
        """Names of the nodes currently connected."""
        return [n.name for n in self._nodes.values()]

    def lost(self, url: str, err: BaseException | str) -> None:
        """The daemon at url stopped answering: its client goes, until connect() succeeds."""
        with self._mu:
            node = self._nodes.pop(url, None)
            who = self._node_names.get(url, url)
            first = who not in self._away  # failed reconnects of the same outage stay quiet
            if first:
                self._away[who] = time.monotonic()
        self._on_lost(url)
        if node is not None:
            node.close()
        if first:
            log.warning("Docker at %s is not answering (%s): names from netns files and raw "
                        "addresses until it is back", url, err)

    def connect(self, url: str) -> DockerNode | None:
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
            self.lost(url, err)
            return None
        with self._mu:
            self._nodes[url] = node
            self._node_names[url] = node.name
            away = self._away.pop(node.name, None) or self._away.pop(url, None)
        self._on_connect(url, node)
        if away is not None:  # the gap's end, as its start was said: both on stderr
            log.warning("Docker at %s (node %s) is back after %.0f s: names from Docker again",
                        url, node.name, time.monotonic() - away)
        log.info("Docker node %s at %s", node.name, url)
        return node

    def rediscover(self, now: float) -> tuple[list[str], list[str]]:
        """While a node is away (now: monotonic s; at most every RECONNECT_S): drop the
        addresses of dockerds gone for good (their /proc/<pid> is), add the ones started
        since. Returns (dropped, added)."""
        if not (self._discover and self._away and now - self._last_discover >= RECONNECT_S):
            return [], []
        self._last_discover = now
        gone = [u for u in self.urls
                if (m := _PROC_PID.match(u)) and not os.path.exists(f"/proc/{m.group(1)}")]
        for url in gone:
            self.urls.remove(url)
            self._next_connect.pop(url, None)
        added = []
        for url in local_docker_sockets():
            if url not in self.urls:
                self.urls.append(url)
                added.append(url)
        return gone, added

    def close(self) -> None:
        with self._mu:
            nodes = list(self._nodes.values())
            self._nodes.clear()
        for n in nodes:
            n.close()
