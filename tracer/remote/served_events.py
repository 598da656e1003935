"""Which events an agent serves: none of its own stream, and on a shared kernel only its node's."""

from __future__ import annotations

import logging
import time

import numpy as np

from tracer.events import F_CT, port_to_raw
from tracer.probes import netns

log = logging.getLogger(__name__)

SCOPE_RESCAN_S = 0.2


class ServedEvents:
    """keep() marks the events of a batch to send; the node's netns are looked up again when
    one not known comes (at most every SCOPE_RESCAN_S)."""

    def __init__(self, own_port: int, scope: netns.NetnsScope | None) -> None:
        self._own_port = port_to_raw(own_port)
        self._scope = scope
        self._allowed: set[int] = set()
        self._last_scope = 0.0

    def keep(self, arr: np.ndarray) -> np.ndarray:
        """This node's netns only, and not the agent's own stream."""
        p = self._own_port
        ct = (arr["flags"] & F_CT) != 0
        mine = (arr["pkt"]["sport"] == p) | (arr["pkt"]["dport"] == p) | \
            (ct & ((arr["orig"]["sport"] == p) | (arr["orig"]["dport"] == p)))
        keep: np.ndarray = ~mine
        scope = self._scope
        if scope is None:
            return keep
        if not self._allowed or (time.monotonic() - self._last_scope >= SCOPE_RESCAN_S and
                                 not np.isin(arr["netns"], list(self._allowed)).all()):
            self._allowed = set(netns.discover(scope=scope))
            self._last_scope = time.monotonic()
        ours: np.ndarray = np.isin(arr["netns"], np.fromiter(self._allowed, dtype=np.uint32))
        if not ours.all():
            log.debug("not this node's netns: %s (this node's: %s)",
                      sorted(set(arr["netns"][~ours].tolist())), sorted(self._allowed))
        out: np.ndarray = keep & ours
        return out
