"""IPVS: is it in this kernel, and what a sandbox's IPVS table says (fwmark -> real servers)."""

from __future__ import annotations

import platform
from dataclasses import dataclass
from pathlib import Path

from tracer.enrich.nsenter import entered

NO_IPVS_MESSAGE = (
    "this kernel has no IPVS: Swarm VIP and routing mesh cannot carry traffic here; "
    "DNS round robin works; use the stock-kernel VM lab"
)


def ipvs_available() -> bool:
    """True if the kernel has IPVS loaded, built in, or as a module it could load."""
    if Path("/proc/net/ip_vs").exists():
        return True
    mods = Path("/lib/modules") / platform.release()
    for index in ("modules.builtin", "modules.dep"):
        try:
            text = (mods / index).read_text()
        except OSError:
            continue
        if "/ip_vs.ko" in text:
            return True
    return False


@dataclass(frozen=True)
class IpvsService:
    fwmark: int  # 0 for address:port services
    addr: str | None
    port: int
    scheduler: str
    dests: tuple[str, ...]  # real server addresses


def read_ipvs(netns: Path) -> list[IpvsService]:
    """The IPVS table inside a netns (empty where the kernel has no IPVS)."""
    if not ipvs_available():
        return []
    from pyroute2 import IPVS, IPVSDest, IPVSService  # lazy: only where IPVS exists

    out: list[IpvsService] = []
    # The IPVS generic netlink socket serves the netns it was opened in.
    with entered(netns):
        ipvs = IPVS()
    with ipvs:
        for msg in ipvs.service("dump"):
            svc = IPVSService.from_message(msg)
            dests = tuple(IPVSDest.from_message(d).get("addr", "?")
                          for d in ipvs.dest("dump", service=svc))
            out.append(IpvsService(
                fwmark=int(svc.get("fwmark", 0) or 0), addr=svc.get("addr"),
                port=int(svc.get("port", 0) or 0), scheduler=str(svc.get("sched_name", "")),
                dests=dests))
    return out
