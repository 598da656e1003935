"""Docker's event streams, one thread per daemon: which nodes changed names since last read."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from tracer.enrich.docker_daemons import RECONNECT_S, DockerDaemons
from tracer.enrich.docker_topology import DOCKER_GONE

log = logging.getLogger(__name__)

# Docker events that change names; exec_*, health_status, attach ... do not.
EVENT_ACTIONS = {
    "container": {"start", "die", "destroy", "rename"},
    "network": {"connect", "disconnect", "create", "destroy"},
    "service": {"create", "update", "remove"},
    "node": {"update", "remove"},
}
DEBOUNCE_S = 0.2  # one reading for a burst of events (a service update is a dozen)


def mono_from_wall_ns(wall_ns: int) -> int:
    """Docker stamps events with wall-clock time; events from BPF use CLOCK_MONOTONIC."""
    return wall_ns - (time.time_ns() - time.monotonic_ns())


class DockerEvents:
    """Follows each daemon's events; one that changes names marks its url unread from the
    event's time (take() says since when) and ends a wait()."""

    def __init__(self, daemons: DockerDaemons) -> None:
        self._daemons = daemons
        self._mu = threading.Lock()
        self._unread: dict[str, int] = {}  # url -> monotonic ns of the earliest unread event
        self._streams: dict[str, Any] = {}
        self._watchers: list[threading.Thread] = []
        self._wake = threading.Event()
        self._stop = threading.Event()

    def follow(self, url: str) -> None:
        """Watch url's events in a thread of their own, until close() or url is dropped."""
        t = threading.Thread(target=self._watch, args=(url,), name=f"docker-events {url}",
                             daemon=True)
        t.start()
        self._watchers.append(t)

    def mark_unread(self, url: str) -> None:
        """url is to be read at the next refresh, without a time of change (just connected)."""
        with self._mu:
            self._unread.setdefault(url, 0)

    def take(self, url: str) -> int | None:
        """None if url had no event since the last take(), else the earliest one's time (0:
        none known)."""
        with self._mu:
            return self._unread.pop(url, None)

    def drop_stream(self, url: str) -> None:
        """url's daemon is lost: close() need not close its stream."""
        with self._mu:
            self._streams.pop(url, None)

    def wait(self, timeout_s: float) -> None:
        """Return after timeout_s, or DEBOUNCE_S after an event that changes names."""
        if self._wake.wait(timeout_s) and not self._stop.wait(DEBOUNCE_S):
            self._wake.clear()

    def _watch(self, url: str) -> None:
        """Follow one daemon's event stream; mark the node unread on events that change names."""
        since = int(time.time()) - 1  # events between the first reading and now
        while not self._stop.is_set() and url in self._daemons.urls:
            node = self._daemons.connect(url)
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
                            self._unread[url] = min(self._unread.get(url) or ts, ts)
                        self._wake.set()
            except DOCKER_GONE as err:
                if not self._stop.is_set():
                    self._daemons.lost(url, err)
                continue
            finally:
                if stream is not None:  # its socket now, not when the collector finds it
                    _close_stream(stream)
            if not self._stop.is_set():  # the stream ended: the daemon went away
                self._daemons.lost(url, "event stream ended")

    def close(self) -> None:
        """Stop every watcher, and end a wait()."""
        self._stop.set()
        self._wake.set()
        with self._mu:
            streams = list(self._streams.values())
        for s in streams:
            _close_stream(s)
        for t in self._watchers:
            t.join(timeout=5)
        self._watchers.clear()


def _close_stream(stream: Any) -> None:
    try:
        stream.close()
    except Exception:  # closing a dead connection: nothing left to release
        log.debug("closing an event stream failed", exc_info=True)
