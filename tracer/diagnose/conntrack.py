"""How full a conntrack table is: a full table drops new connections (NETFILTER_DROP)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

FULL = 0.9  # of nf_conntrack_max: new connections are about to be dropped
TOO_SMALL = 1024  # a max below this runs out with a handful of clients

_DIR = Path("/proc/sys/net/netfilter")


@dataclass(frozen=True)
class ConntrackUse:
    count: int  # entries in one netns (each netns counts its own against the one max)
    max: int  # nf_conntrack_max, one for the whole kernel

    @property
    def full(self) -> bool:
        return self.max > 0 and (self.count >= FULL * self.max or self.max < TOO_SMALL)


def conntrack_use() -> ConntrackUse | None:
    """This thread's netns's conntrack use; None where conntrack is not loaded."""
    try:
        return ConntrackUse(int((_DIR / "nf_conntrack_count").read_text()),
                            int((_DIR / "nf_conntrack_max").read_text()))
    except (OSError, ValueError):
        return None
