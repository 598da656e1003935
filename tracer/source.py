"""The one interface every event source implements: live probes (core, bcc) and replay."""

from __future__ import annotations

from dataclasses import dataclass, field
from types import TracebackType
from typing import Protocol, runtime_checkable

import numpy as np


@dataclass(frozen=True)
class SourceInfo:
    """What produced the events: shown in status bars and stored in trace file headers."""

    backend: str  # "core", "bcc", "replay"
    kernel: str
    live: bool
    notes: tuple[str, ...] = ()  # e.g. "IPVS stand-in: iptables round robin"
    drop_reasons: tuple[str, ...] = ()  # this kernel's enum skb_drop_reason names, by code


@dataclass
class SourceStats:
    events: int = 0
    lost: int = 0  # ring buffer reservations that failed in the kernel
    filtered: int = 0
    extra: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Filter:
    """What is of interest. Empty = everything (still only the informative packets)."""

    ports: tuple[int, ...] = ()
    addrs: tuple[str, ...] = ()
    all_packets: bool = False  # every packet, not only SYN/FIN/RST and first data
    devices: bool = False  # also rx/tx device crossings
    expr: str = ""  # a pcap-filter expression (--filter), alongside ports and addresses
    # The overlay crossing: VXLAN packets to this UDP port on the underlay (0: not traced).
    vxlan_port: int = 4789


class EventSource(Protocol):
    """A stream of raw events (numpy arrays of tracer.events.EVENT_DTYPE)."""

    info: SourceInfo

    def __enter__(self) -> EventSource: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

    def poll(self, timeout_s: float) -> np.ndarray:
        """Events that arrived since the last call; empty after timeout_s without any."""
        ...

    @property
    def finished(self) -> bool:
        """True when no event will ever come again (end of a replayed file)."""
        ...

    def stats(self) -> SourceStats: ...

    def lost(self) -> int:
        """stats().lost read cheaply: the pipeline compares it after every poll."""
        ...


@runtime_checkable
class AgentSource(Protocol):
    """A source fed by per-node agents (the collector): which nodes are being traced."""

    def agents(self) -> dict[str, bool]:
        """node name -> whether its agent is streaming now."""
        ...
