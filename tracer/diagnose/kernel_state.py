"""What the kernel holds in one netns, read without changing it: sysctls, iptables tables,
links and their MTU, a VXLAN device's FDB and neighbours, conntrack use, Docker DNS answers.

Every reader enters the netns in the calling thread only (enrich/nsenter.py) or runs the
iptables tools under nsenter; a netns that is gone reads as None/empty, never as an error."""

from __future__ import annotations

import re
import socket
import struct
from dataclasses import dataclass
from pathlib import Path

from pyroute2 import IPRoute

from tracer.enrich.nsenter import entered, run_in

DNS_TIMEOUT_S = 2.0
DOCKER_DNS = ("127.0.0.11", 53)
_AF_BRIDGE = 7
_NUD_PERMANENT = 0x80
_TCP_LISTEN = "0A"  # st column of /proc/net/tcp


def sysctl(netns: Path, key: str) -> str | None:
    """A per-netns sysctl (`net.ipv4.ip_forward`) as seen inside netns; None if absent."""
    path = Path("/proc/sys") / key.replace(".", "/")
    try:
        with entered(netns):
            return path.read_text().strip()
    except OSError:
        return None


# Both iptables back ends can hold rules in one netns; a packet must pass both.
IPTABLES = {"nft": "iptables", "legacy": "iptables-legacy"}


def iptables_save(netns: Path, table: str) -> dict[str, str]:
    """`iptables-save -t table` inside netns, per back end that has the table ({} if none)."""
    out = {}
    for flavour, tool in IPTABLES.items():
        # Asking iptables-legacy for a table the netns lacks would create it: only read
        # the legacy tables that exist.
        if flavour == "legacy" and table not in _legacy_tables(netns):
            continue
        res = run_in(netns, [f"{tool}-save", "-t", table])
        if res is not None and res.returncode == 0 and "\nCOMMIT" in res.stdout:
            out[flavour] = res.stdout
    return out


@dataclass(frozen=True)
class IpvsTimeouts:
    """IPVS's idle timeouts in one netns, in seconds: an established TCP connection, one
    closing (FIN), a UDP flow. A connection idle longer loses its entry."""

    tcp: int
    tcpfin: int
    udp: int


_IPVS_TIMEOUTS = re.compile(r"Timeout \(tcp tcpfin udp\): (\d+) (\d+) (\d+)")


def ipvs_timeouts(netns: Path) -> IpvsTimeouts | None:
    """`ipvsadm -L --timeout` inside netns; None without IPVS there or without ipvsadm."""
    res = run_in(netns, ["ipvsadm", "-L", "--timeout"])
    if res is None or res.returncode != 0:
        return None
    m = _IPVS_TIMEOUTS.search(res.stdout)
    return IpvsTimeouts(*map(int, m.groups())) if m else None


def _legacy_tables(netns: Path) -> set[str]:
    try:
        with entered(netns):
            return set(Path("/proc/thread-self/net/ip_tables_names").read_text().split())
    except OSError:
        return set()


def listening(netns: Path) -> set[tuple[str, int]]:
    """(proto, port) of the TCP sockets listening in netns."""
    found: set[tuple[str, int]] = set()
    for proto in ("tcp", "tcp6"):
        try:
            with entered(netns):
                text = Path(f"/proc/thread-self/net/{proto}").read_text()
        except OSError:
            continue
        for line in text.splitlines()[1:]:
            fields = line.split()
            if len(fields) > 3 and fields[3] == _TCP_LISTEN:
                found.add(("tcp", int(fields[1].rsplit(":", 1)[1], 16)))
    return found


@dataclass(frozen=True)
class Link:
    name: str
    kind: str  # "veth", "vxlan", "bridge", "" ...
    mtu: int
    up: bool
    addrs: tuple[str, ...]


def _netlink(netns: Path) -> IPRoute | None:
    """A netlink socket of netns (None if it is gone); close it when done."""
    try:
        with entered(netns):
            return IPRoute()
    except OSError:
        return None


def links(netns: Path) -> list[Link]:
    if (ipr := _netlink(netns)) is None:
        return []
    with ipr:
        addrs: dict[int, list[str]] = {}
        for a in ipr.get_addr(family=socket.AF_INET):
            addrs.setdefault(a["index"], []).append(a.get("IFA_ADDRESS"))
        out = []
        for m in ipr.get_links():
            info = m.get("IFLA_LINKINFO")
            kind = (info.get("IFLA_INFO_KIND") if info is not None else None) or ""
            out.append(Link(m.get("IFLA_IFNAME"), kind, int(m.get("IFLA_MTU") or 0),
                            bool(m["flags"] & 1), tuple(addrs.get(m["index"], ()))))
        return out


@dataclass(frozen=True)
class VxlanTables:
    device: str
    fdb_dst: frozenset[str]  # remote VTEP addresses the device's FDB sends to
    neigh: frozenset[str]  # remote endpoint addresses with a permanent neighbour entry


def vxlan_tables(netns: Path) -> list[VxlanTables]:
    """FDB destinations and permanent neighbours of every VXLAN device in netns."""
    if (ipr := _netlink(netns)) is None:
        return []
    with ipr:
        devices = {}
        for m in ipr.get_links():
            info = m.get("IFLA_LINKINFO")
            if info is not None and info.get("IFLA_INFO_KIND") == "vxlan":
                devices[m["index"]] = m.get("IFLA_IFNAME")
        fdb: dict[int, set[str]] = {i: set() for i in devices}
        neigh: dict[int, set[str]] = {i: set() for i in devices}
        for n in ipr.get_neighbours(family=_AF_BRIDGE):
            if n["ifindex"] in devices and (dst := n.get("NDA_DST")):
                fdb[n["ifindex"]].add(dst)
        for n in ipr.get_neighbours(family=socket.AF_INET):
            permanent = n["ifindex"] in devices and n["state"] & _NUD_PERMANENT
            if permanent and (dst := n.get("NDA_DST")):
                neigh[n["ifindex"]].add(dst)
    return [VxlanTables(name, frozenset(fdb[i]), frozenset(neigh[i]))
            for i, name in devices.items()]


def dns_answers(netns: Path, name: str) -> tuple[str, ...] | None:
    """The A records Docker DNS (127.0.0.11 inside a container's netns) gives for name, in
    order; None if it did not answer. Loopback inside that netns only."""
    qid = 0x5354
    query = struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 0)
    query += b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\0"
    query += struct.pack("!HH", 1, 1)
    try:
        with entered(netns):
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    except OSError:
        return None
    with sock:
        sock.settimeout(DNS_TIMEOUT_S)
        try:
            sock.sendto(query, DOCKER_DNS)
            data = sock.recv(4096)
        except OSError:
            return None
    return _a_records(data, qid)


def _a_records(data: bytes, qid: int) -> tuple[str, ...] | None:
    if len(data) < 12:
        return None
    rid, flags, qd, an = struct.unpack("!HHHH", data[:8])
    if rid != qid or not flags & 0x8000:
        return None
    pos = 12
    for _ in range(qd):
        pos = _skip_name(data, pos) + 4
    out = []
    for _ in range(an):
        pos = _skip_name(data, pos)
        rtype, _cls, _ttl, length = struct.unpack("!HHIH", data[pos:pos + 10])
        pos += 10
        if rtype == 1 and length == 4:
            out.append(socket.inet_ntoa(data[pos:pos + 4]))
        pos += length
    return tuple(out)


def _skip_name(data: bytes, pos: int) -> int:
    while pos < len(data):
        n = data[pos]
        if n == 0:
            return pos + 1
        if n & 0xC0 == 0xC0:
            return pos + 2
        pos += n + 1
    return pos
