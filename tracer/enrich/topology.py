"""A Topology: what is on the node(s) at one moment, keyed the way kernel events name things."""

from __future__ import annotations

from dataclasses import dataclass, field

from tracer.enrich.names import AddrName, NetnsName


@dataclass(frozen=True)
class Topology:
    """One reading of a node (or of the netns directories): plain maps, no history.

    fwmarks come from mangle MARK rules inside one netns; lb_index from Docker's LocalLBIndex,
    which is per node (every sandbox on that node uses the same mark for a service).
    """

    netns: dict[int, NetnsName] = field(default_factory=dict)  # netns inode ->
    addrs: dict[str, AddrName] = field(default_factory=dict)  # ip ->
    # (netns inode, mark) -> service
    fwmarks: dict[tuple[int, int], str] = field(default_factory=dict)
    # (node, mark) -> service
    lb_index: dict[tuple[str, int], str] = field(default_factory=dict)
    # (proto, published port) -> service
    ports: dict[tuple[str, int], str] = field(default_factory=dict)
    # VXLAN network identifier -> overlay network name
    vnis: dict[int, str] = field(default_factory=dict)

    def merged(self, other: Topology) -> Topology:
        """Self with other's entries added where self has none (self wins on conflicts)."""
        return Topology(
            netns=other.netns | self.netns,
            addrs=other.addrs | self.addrs,
            fwmarks=other.fwmarks | self.fwmarks,
            lb_index=other.lb_index | self.lb_index,
            ports=other.ports | self.ports,
            vnis=other.vnis | self.vnis,
        )
