"""What one run of the netfilter program costs, per path through it: BPF_PROG_TEST_RUN of
st_nf_hook on crafted packets, on the running kernel. No lab and no traffic, so the figures
do not move with the machine's load as the flood's do; the flood (tracer.bench.overhead) says
how many runs of each kind a request makes."""

from __future__ import annotations

import argparse
import ipaddress
import os
import struct

from tracer.bench.overhead import FILTER
from tracer.probes import bpf_object_path, libbpf
from tracer.probes.core import (
    CNT_EMITTED,
    CNT_LOST,
    RING_BYTES,
    check_capabilities,
    configure,
    per_cpu_counter,
)
from tracer.probes.ringbuf import RingReader

NF_INET_PRE_ROUTING, NF_INET_POST_ROUTING = 0, 4
TCP_SYN, TCP_ACK = 0x02, 0x10
CLIENT, NODE = "192.168.100.2", "192.168.100.1"  # the lab's client and node addresses


def tcp_packet(sport: int, dport: int, flags: int, client: str = CLIENT) -> bytes:
    """An Ethernet frame with an IPv4 TCP segment from a client (the lab's) to the node; the
    test run takes the frame apart as a device would (every hook but LOCAL_OUT)."""
    tcp = struct.pack("!HHIIBBHHH", sport, dport, 1, 0, 5 << 4, flags, 65535, 0, 0)
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), 1, 0, 64, 6, 0,
                     ipaddress.IPv4Address(client).packed, ipaddress.IPv4Address(NODE).packed)
    return bytes(12) + b"\x08\x00" + ip + tcp


def hook_state(hook: int) -> bytes:
    """struct nf_hook_state as the test run takes it: hook, pf (IPv4) and zeroed pointers."""
    return struct.pack("<BB46x", hook, libbpf.NFPROTO_IPV4)


# What a request's runs meet, in the lab's flood with the bench's filter (port 8080 + VIP).
CASES = (
    ("ACK of a watched flow: not informative (most runs)", NF_INET_PRE_ROUTING,
     tcp_packet(40000, 8080, TCP_ACK)),
    ("SYN leaving without SNAT (POSTROUTING)", NF_INET_POST_ROUTING,
     tcp_packet(40000, 8080, TCP_SYN)),
    ("SYN of an unwatched flow: filtered", NF_INET_PRE_ROUTING, tcp_packet(40000, 5000, TCP_SYN)),
    ("SYN of a watched flow: one event", NF_INET_PRE_ROUTING, tcp_packet(40000, 8080, TCP_SYN)),
)


# In the flood the flow map is always full: each new flow's insert evicts an older entry. More
# new flows than st_flows holds (131,072; 65,536 in each of the two maps it replaced) fill it.
FULL_MAP_FLOWS = 2 * 131072
CLIENT_PORTS = range(1024, 65536)


def new_flow_syn(i: int) -> bytes:
    """The SYN of the i-th of distinct watched flows (client port and address vary)."""
    n = len(CLIENT_PORTS)
    return tcp_packet(CLIENT_PORTS[i % n], 8080, TCP_SYN, f"10.{1 + i // n}.0.2")


def new_flows_ns(prog: int, ring: RingReader, first: int, count: int) -> float:
    """Mean ns per run over `count` new flows, one run per test run: a repeated run would find
    its flow known. The ring is drained as it goes (a full ring makes reserve fail early)."""
    total = 0
    state = hook_state(NF_INET_PRE_ROUTING)
    for i in range(first, first + count):
        total += libbpf.prog_test_run(prog, new_flow_syn(i), state, 1)[1]
        if i % 4096 == 0:
            ring.read()
    ring.read()
    return total / count


def load_program() -> libbpf.BpfObject:
    """The CO-RE object loaded (nothing attached) with the overhead bench's filter."""
    check_capabilities()
    obj = libbpf.BpfObject(bpf_object_path())
    try:
        obj.set_max_entries("st_events", RING_BYTES)
        obj.make_netfilter("st_nf_hook")
        obj.load()
        configure(obj, FILTER, netfilter=True)
    except BaseException:
        obj.close()
        raise
    return obj


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--repeat", type=int, default=10000, help="runs per measurement")
    ap.add_argument("--tries", type=int, default=5, help="measurements per case; the least is "
                    "printed (the others were disturbed by the machine's other work)")
    ap.add_argument("--new-flows", type=int, default=8192, help="new flows per measurement of "
                    "the full-map case")
    args = ap.parse_args()
    obj = load_program()
    ring = RingReader(obj.map_fd("st_events"), RING_BYTES)
    try:
        prog = obj.prog_fd("st_nf_hook")
        print(f"st_nf_hook, filter port 8080 + VIP, {args.repeat} runs x {args.tries}, "
              f"load average {os.getloadavg()[0]:.2f}")
        for label, hook, packet in CASES:
            ns = min(libbpf.prog_test_run(prog, packet, hook_state(hook), args.repeat)[1]
                     for _ in range(args.tries))
            print(f"{ns:5d} ns  {label}")
        ring.read()
        print("one run per test run (the kernel's clock is read around each: ~50 ns more):")
        _, hook, packet = CASES[-1]
        known = [libbpf.prog_test_run(prog, packet, hook_state(hook), 1)[1]
                 for _ in range(args.new_flows)]
        print(f"{sum(known) / len(known):5.0f} ns  {CASES[-1][0]}")
        new_flows_ns(prog, ring, 0, FULL_MAP_FLOWS)
        first = FULL_MAP_FLOWS
        fresh = []
        for _ in range(args.tries):
            fresh.append(new_flows_ns(prog, ring, first, args.new_flows))
            first += args.new_flows
        print(f"{min(fresh):5.0f} ns  SYN of a new watched flow, flow map full: each insert "
              f"evicts (mean of {args.new_flows} flows)")
        ncpu = os.cpu_count() or 1
        emitted, lost = (sum(per_cpu_counter(obj, idx, ncpu)) for idx in (CNT_EMITTED, CNT_LOST))
        print(f"events emitted {emitted}, lost {lost}")
    finally:
        ring.close()
        obj.close()


if __name__ == "__main__":
    main()
