"""Hand-made event streams shaped like the routing mesh, for format tests and benchmarks.

They exercise the file format (sizes, compression, round trips), not correlation: correlation
tests use traces recorded from real runs (tests/fixtures/*.swt).
"""

from __future__ import annotations

import numpy as np

from tracer.events import (
    EVENT_DTYPE,
    F_CT,
    F_REPLY_DIR,
    IPS_DST_NAT,
    IPS_SRC_NAT,
    TCP_ACK,
    TCP_FIN,
    TCP_PSH,
    TCP_SYN,
    Point,
    ip_to_raw,
    port_to_raw,
)

# netns inodes of the lab's namespaces, as the kernel numbers them.
NETNS_HOST, NETNS_SBOX, NETNS_BACKEND = 4026531840, 4026532301, 4026532377
CLIENT, NODE, SBOX, SNAT_ADDR = "192.168.100.2", "192.168.100.1", "172.18.0.2", "10.255.0.2"
BACKENDS = ("10.255.0.5", "10.255.0.6")
MESH_MARK = 0x105

# (netns, ifindex, point) of each hop a client->backend packet is reported at.
_FORWARD_PATH = (
    (NETNS_HOST, 2, Point.NF_PRE),
    (NETNS_HOST, 5, Point.NF_POST),
    (NETNS_SBOX, 7, Point.NF_PRE),
    (NETNS_SBOX, 9, Point.NF_POST),
    (NETNS_BACKEND, 11, Point.NF_IN),
)
_REPLY_PATH = (
    (NETNS_BACKEND, 11, Point.NF_OUT),
    (NETNS_SBOX, 9, Point.NF_PRE),
    (NETNS_SBOX, 7, Point.NF_POST),
    (NETNS_HOST, 5, Point.NF_PRE),
    (NETNS_HOST, 2, Point.NF_POST),
)
# TCP flags of the packets of one request (True = sent by the backend side).
_PACKETS = (
    (TCP_SYN, False),
    (TCP_SYN | TCP_ACK, True),
    (TCP_ACK, False),
    (TCP_PSH | TCP_ACK, False),
    (TCP_PSH | TCP_ACK, True),
    (TCP_FIN | TCP_ACK, True),
    (TCP_FIN | TCP_ACK, False),
    (TCP_ACK, True),
)
EVENTS_PER_REQUEST = len(_PACKETS) * len(_FORWARD_PATH)


def _tuple(rec: np.void, saddr: str, sport: int, daddr: str, dport: int) -> None:
    rec["saddr"], rec["sport"] = ip_to_raw(saddr), port_to_raw(sport)
    rec["daddr"], rec["dport"] = ip_to_raw(daddr), port_to_raw(dport)


def _request_template(backend: str) -> np.ndarray:
    """The events of one request with ports, skbs, ct ids and times left to fill in."""
    out = np.zeros(EVENTS_PER_REQUEST, dtype=EVENT_DTYPE)
    i = 0
    for flags, from_backend in _PACKETS:
        for hop, (netns, ifindex, point) in enumerate(
            _REPLY_PATH if from_backend else _FORWARD_PATH
        ):
            r = out[i]
            r["netns"], r["ifindex"], r["point"], r["proto"] = netns, ifindex, point, 6
            r["tcp_flags"], r["ctinfo"] = (
                flags,
                3 if from_backend else (0 if flags == TCP_SYN else 1),
            )
            r["flags"] = F_CT | (F_REPLY_DIR if from_backend else 0)
            in_sbox = netns == NETNS_SBOX
            r["mark"] = MESH_MARK if in_sbox and not from_backend else 0
            # pkt: the tuple as seen at this hop (before/after each NAT), with the client port
            # filled in later; orig/reply: the conntrack entry of this netns.
            if not from_backend:
                stage = (hop + 1) // 2  # 0 host pre, 1 host post/sbox pre, 2 sbox post/backend
                src = SNAT_ADDR if stage == 2 else CLIENT
                dst = (NODE, SBOX, backend)[stage]
                _tuple(r["pkt"], src, 0, dst, 8080 if stage < 2 else 80)
            else:
                stage = 2 - hop // 2
                dst = (CLIENT, CLIENT, SNAT_ADDR)[stage]
                src = (NODE, SBOX, backend)[stage]
                _tuple(r["pkt"], src, 8080 if stage < 2 else 80, dst, 0)
            if netns == NETNS_HOST:
                _tuple(r["orig"], CLIENT, 0, NODE, 8080)
                _tuple(r["reply"], SBOX, 8080, CLIENT, 0)
                r["ct_status"] = IPS_DST_NAT | 0x188
            elif in_sbox:
                _tuple(r["orig"], CLIENT, 0, SBOX, 8080)
                _tuple(r["reply"], backend, 80, SNAT_ADDR, 0)
                r["ct_status"] = IPS_DST_NAT | IPS_SRC_NAT | 0x188
            else:
                _tuple(r["orig"], SNAT_ADDR, 0, backend, 80)
                _tuple(r["reply"], backend, 80, SNAT_ADDR, 0)
                r["ct_status"] = 0x188
            i += 1
    return out


def mesh_events(requests: int, *, seed: int = 1, rate_per_s: float = 3000.0) -> np.ndarray:
    """`requests` routing-mesh requests (40 events each), round robin over two backends."""
    rng = np.random.default_rng(seed)
    templates = [_request_template(b) for b in BACKENDS]
    n = requests * EVENTS_PER_REQUEST
    out = np.empty(n, dtype=EVENT_DTYPE)
    for b in range(len(BACKENDS)):
        out.reshape(requests, EVENTS_PER_REQUEST)[b :: len(BACKENDS)] = templates[b]
    per_req = out.reshape(requests, EVENTS_PER_REQUEST)

    # Client ports: ephemeral, mostly increasing; the same port through the whole request.
    ports = (32768 + (np.arange(requests) * 7 + rng.integers(0, 5, requests)) % 28000).astype(
        np.uint16
    )
    raw_ports = ((ports >> 8) | (ports << 8)).astype(np.uint16)[:, None]
    reply_dir = (per_req["flags"] & F_REPLY_DIR) != 0
    per_req["pkt"]["sport"] = np.where(reply_dir, per_req["pkt"]["sport"], raw_ports)
    per_req["pkt"]["dport"] = np.where(reply_dir, raw_ports, per_req["pkt"]["dport"])
    per_req["orig"]["sport"] = raw_ports
    per_req["reply"]["dport"] = raw_ports

    # One skb per packet per netns leg (the skb survives veth hops, replies are new skbs);
    # slab addresses: 256-byte aligned in a few MiB of kernel memory.
    packets = n // len(_FORWARD_PATH)
    skbs = 0xFFFF888100000000 + rng.integers(0, 1 << 16, packets).astype(np.uint64) * 256
    out["skb"] = np.repeat(skbs, len(_FORWARD_PATH))
    # Conntrack entry ids: one per request per netns.
    ct_base = rng.integers(1 << 20, 1 << 31, requests).astype(np.uint32)
    per_req["ct"] = ct_base[:, None] + (per_req["netns"] - NETNS_HOST).astype(np.uint32)

    # Time: requests arrive at rate_per_s (exponential gaps), hops a few microseconds apart.
    start = 1_000_000_000_000 + np.cumsum(rng.exponential(1e9 / rate_per_s, requests))
    hop_gap = rng.integers(800, 6000, (requests, EVENTS_PER_REQUEST)).cumsum(axis=1)
    per_req["ts_ns"] = start.astype(np.uint64)[:, None] + hop_gap.astype(np.uint64)
    # Requests overlap in time: keep the stream ordered as a ring buffer delivers it.
    return out[np.argsort(out["ts_ns"], kind="stable")]
