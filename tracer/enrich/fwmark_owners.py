"""Which service each fwmark in a node's sandboxes stands for, read from the sandboxes."""

from __future__ import annotations

import logging
from pathlib import Path

from tracer.enrich.ipvs import read_ipvs
from tracer.enrich.mangle import read_mark_rules
from tracer.enrich.names import AddrName, NetnsName
from tracer.enrich.netns_names import nsfs_inode

log = logging.getLogger(__name__)


class FwmarkOwners:
    """fwmark -> service per sandbox of one node: its MARK rules (VIP or published port), else
    its IPVS table (whose real servers are tasks of one service); cross-checked against the
    node's LocalLBIndex, a disagreement is reported once."""

    def __init__(self, node: str, netns_dir: Path | None) -> None:
        self._node, self._netns_dir = node, netns_dir
        self._disagreed: set[tuple[int, int]] = set()

    def read(self, netns: dict[int, NetnsName], vips: dict[str, AddrName],
             ports: dict[tuple[str, int], str], task_service: dict[str, str],
             lb_index: dict[tuple[str, int], str]) -> dict[tuple[int, int], str]:
        """(netns inode, mark) -> service, for the sandboxes among netns."""
        marks: dict[tuple[int, int], str] = {}
        files = {nsfs_inode(p): p for p in self._sandbox_files()}
        for ino, ns in netns.items():
            path = files.get(ino) if ns.kind in ("container", "ingress_sbox", "lb") else None
            if path is None:
                continue
            for rule in read_mark_rules(path):
                by_vip = vips[rule.vip].service if rule.vip in vips else None
                by_port = ports.get((rule.proto or "tcp", rule.dport)) if rule.dport else None
                if svc := by_vip or by_port:
                    marks[(ino, rule.mark)] = svc
            for table in read_ipvs(path):
                owners = {task_service.get(d) for d in table.dests} - {None}
                if table.fwmark and len(owners) == 1:
                    marks.setdefault((ino, table.fwmark), str(owners.pop()))
        for (ino, mark), svc in marks.items():
            indexed = lb_index.get((self._node, mark))
            if indexed is not None and indexed != svc and (ino, mark) not in self._disagreed:
                self._disagreed.add((ino, mark))
                log.warning("%s: fwmark %#x in %s is %s by its MARK rule/IPVS table but %s by "
                            "LocalLBIndex", self._node, mark, netns[ino].label, svc, indexed)
        return marks

    def _sandbox_files(self) -> list[Path]:
        try:
            return list(self._netns_dir.iterdir()) if self._netns_dir else []
        except OSError:
            return []
