"""Enrichment: name netns inodes, addresses and fwmarks in Docker Swarm's (or the lab's) words.

Live:    with open_names() as names: names.netns(inode, ts_ns) ...
Replay:  names = recorded_names(trace_header["names"])   (enrich.history)
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from tracer.enrich.names import AddrName, Names, NetnsName

if TYPE_CHECKING:
    from tracer.enrich.netns_names import NetnsNames

__all__ = ["AddrName", "Names", "NetnsName", "open_names"]

log = logging.getLogger(__name__)


def open_names(sockets: list[str] | None = None, use_docker: bool = True) -> NetnsNames:
    """A started live resolver: DockerNames over every local dockerd (or `sockets`), else
    NetnsNames, saying so once. Close it (or use it as a context manager) when done."""
    from tracer.enrich.netns_names import NetnsNames

    if use_docker:
        from tracer.enrich.docker_names import DockerNames
        from tracer.enrich.docker_topology import local_docker_sockets

        found = sockets if sockets is not None else local_docker_sockets()
        if found:
            # None: DockerNames finds the local daemons itself, and again when one restarts.
            return DockerNames(sockets).start()
        log.warning("no Docker daemon found: names from netns files and raw addresses only")
    return NetnsNames().start()
