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

NF_INET_PRE_ROUTING, NF_INET_POST_ROUTING = 0, 4
TCP_SYN, TCP_ACK = 0x02, 0x10
CLIENT, NODE = "192.168.100.2", "192.168.100.1"  # the lab's client and node addresses


def tcp_packet(sport: int, dport: int, flags: int) -> bytes:
    """An Ethernet frame with an IPv4 TCP segment from the lab's client to the node; the test
    run takes the frame apart as a device would (every hook but LOCAL_OUT)."""
    tcp = struct.pack("!HHIIBBHHH", sport, dport, 1, 0, 5 << 4, flags, 65535, 0, 0)
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), 1, 0, 64, 6, 0,
                     ipaddress.IPv4Address(CLIENT).packed, ipaddress.IPv4Address(NODE).packed)
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
    args = ap.parse_args()
    obj = load_program()
    try:
        prog = obj.prog_fd("st_nf_hook")
        print(f"st_nf_hook, filter port 8080 + VIP, {args.repeat} runs x {args.tries}, "
              f"load average {os.getloadavg()[0]:.2f}")
        for label, hook, packet in CASES:
            ns = min(libbpf.prog_test_run(prog, packet, hook_state(hook), args.repeat)[1]
                     for _ in range(args.tries))
            print(f"{ns:5d} ns  {label}")
        ncpu = os.cpu_count() or 1
        emitted, lost = (sum(per_cpu_counter(obj, idx, ncpu)) for idx in (CNT_EMITTED, CNT_LOST))
        print(f"events emitted {emitted}, lost {lost} (the ring is not read here)")
    finally:
        obj.close()


if __name__ == "__main__":
    main()
