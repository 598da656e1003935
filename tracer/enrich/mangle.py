"""fwmarks as Docker installs them: mangle MARK rules inside a sandbox netns.

VIP mode:      -A OUTPUT -d 10.0.0.9/32 -j MARK --set-xmark 0x103/0xffffffff
routing mesh:  -A PREROUTING -p tcp -m tcp --dport 8080 -j MARK --set-xmark 0x105/0xffffffff
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from tracer.enrich.nsenter import run_in

_MARK = re.compile(r"-j MARK --set-(?:x)?mark (0x[0-9a-f]+|\d+)")
_DEST = re.compile(r"-d (\d+\.\d+\.\d+\.\d+)(?:/32)?\b")
_DPORT = re.compile(r"--dport (\d+)\b")
_PROTO = re.compile(r"-p (tcp|udp|sctp)\b")


@dataclass(frozen=True)
class MarkRule:
    mark: int
    vip: str | None  # -d <VIP> (VIP mode, in the client's sandbox)
    proto: str | None
    dport: int | None  # --dport <published port> (routing mesh, in ingress_sbox)


def parse_mark_rules(iptables_save: str) -> list[MarkRule]:
    rules = []
    for line in iptables_save.splitlines():
        if not line.startswith("-A ") or not (m := _MARK.search(line)):
            continue
        d, p, proto = _DEST.search(line), _DPORT.search(line), _PROTO.search(line)
        rules.append(MarkRule(int(m.group(1), 0), d.group(1) if d else None,
                              proto.group(1) if proto else None, int(p.group(1)) if p else None))
    return rules


def read_mark_rules(netns: Path) -> list[MarkRule]:
    """The MARK rules of the mangle table inside netns (a netns file path)."""
    res = run_in(netns, ["iptables-save", "-t", "mangle"])
    return parse_mark_rules(res.stdout) if res is not None and res.returncode == 0 else []
