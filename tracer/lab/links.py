"""Bridges, veth pairs, addresses and routes of the lab, made with pyroute2 inside each netns."""

from __future__ import annotations

from contextlib import ExitStack

from pyroute2 import IPRoute

from tracer.lab.topology import BRIDGES, NAMESPACES, ROUTES, VETHS, Port


def _ipr(stack: ExitStack, cache: dict[str, IPRoute], name: str) -> IPRoute:
    if name not in cache:
        # flags=0: never create a netns by accident when one is missing.
        cache[name] = stack.enter_context(IPRoute(netns=name, flags=0))
    return cache[name]


def _index(ipr: IPRoute, ifname: str) -> int:
    return int(ipr.link_lookup(ifname=ifname)[0])


def _configure(ipr: IPRoute, port: Port) -> None:
    idx = _index(ipr, port.ifname)
    if port.master:
        ipr.link("set", index=idx, master=_index(ipr, port.master))
    if port.address:
        ip, prefix = port.address.split("/")
        ipr.addr("add", index=idx, address=ip, prefixlen=int(prefix))
    ipr.link("set", index=idx, state="up")


def build() -> None:
    """Create every link of the topology; the netns must exist and be empty."""
    with ExitStack() as stack:
        cache: dict[str, IPRoute] = {}
        for ns in NAMESPACES:
            ipr = _ipr(stack, cache, ns.name)
            ipr.link("set", index=_index(ipr, "lo"), state="up")
        for bridge in BRIDGES:
            ipr = _ipr(stack, cache, bridge.netns)
            ipr.link("add", ifname=bridge.name, kind="bridge")
            _configure(ipr, Port(bridge.netns, bridge.name, bridge.address))
        for veth in VETHS:
            ipr = _ipr(stack, cache, veth.a.netns)
            ipr.link(
                "add",
                ifname=veth.a.ifname,
                kind="veth",
                peer={"ifname": veth.b.ifname, "net_ns_fd": veth.b.netns},
            )
            _configure(ipr, veth.a)
            _configure(_ipr(stack, cache, veth.b.netns), veth.b)
        for route in ROUTES:
            _ipr(stack, cache, route.netns).route("add", dst="0.0.0.0/0", gateway=route.gateway)
