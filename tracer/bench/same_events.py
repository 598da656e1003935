"""Whether a change to the kernel programs keeps their events: the same lab workload traced by
this checkout's CO-RE object and by another build's (`--against DIR`, e.g. main's bpf/build),
in turns, under six filter settings; the raw events are compared one for one, without what
differs between two runs of the same requests (times, skb and conntrack addresses, the
clients' ports)."""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter

import numpy as np

from tracer import lab
from tracer.bench.builds import THIS_BUILD, add_against, check_against, lab_up, object_dir
from tracer.lab.refuse import refusing
from tracer.lab.topology import BACKENDS, PUBLISHED_PORT, TASK_PORT, VIP
from tracer.probes.core import CoreSource
from tracer.source import Filter

SETTINGS: tuple[tuple[str, Filter, bool], ...] = (  # name, filter, netfilter programs
    ("--port/--addr", Filter(ports=(PUBLISHED_PORT,), addrs=(VIP,)), True),
    ("--filter", Filter(expr=f"tcp and dst port {PUBLISHED_PORT}"), True),
    ("no filter", Filter(), True),
    ("--all-packets", Filter(ports=(PUBLISHED_PORT,), addrs=(VIP,), all_packets=True), True),
    ("--devices", Filter(ports=(PUBLISHED_PORT,), addrs=(VIP,), devices=True), True),
    ("no netfilter programs", Filter(ports=(PUBLISHED_PORT,), addrs=(VIP,)), False),
)
KNOWN_PORTS = {PUBLISHED_PORT, TASK_PORT}
QUIET_S = 1.0  # no lab event for this long after the last answer: the run's events are in
MAX_WAIT_S = 30

SHOWN = 5  # differing events printed per side
SCALARS = ("netns", "ifindex", "point", "proto", "tcp_flags", "flags", "ctinfo", "ct_status",
           "mark", "aux")
TUPLES = ("pkt", "orig", "reply")
FIELDS = SCALARS + tuple(f"{t}.{f}" for t in TUPLES for f in ("saddr", "daddr", "sport", "dport"))

Key = tuple[int, ...]


def workload(requests: int) -> None:
    """Mesh and VIP requests, then mesh requests while one backend refuses (RST, drops).
    Even counts: the lab's round robin is in the same phase for the next run."""
    lab.traffic("mesh", requests)
    lab.traffic("vip", requests)
    with refusing(BACKENDS[0]):
        lab.traffic("mesh", 4)


def _port(raw: int) -> int:
    """A port from network order, or 0 for a client's own (it differs between runs)."""
    port = int.from_bytes(int(raw).to_bytes(2, "little"), "big")
    return port if port in KNOWN_PORTS else 0


def keys(events: np.ndarray) -> Counter[Key]:
    """Events as comparable keys."""
    out: Counter[Key] = Counter()
    for e in events:
        fields = [int(e[f]) for f in SCALARS]
        for t in TUPLES:
            fields += [int(e[t]["saddr"]), int(e[t]["daddr"]), _port(e[t]["sport"]),
                       _port(e[t]["dport"])]
        out[tuple(fields)] += 1
    return out


def traced(flt: Filter, netfilter: bool, requests: int, lab_netns: set[int]) -> Counter[Key]:
    """The lab's events in one run of the workload (not the machine's other traffic)."""
    chunks = []
    inodes = np.array(sorted(lab_netns), dtype="<u4")
    with CoreSource(flt, netfilter=netfilter) as src:
        workload(requests)
        start = last = time.monotonic()
        while time.monotonic() - last < QUIET_S:  # the rest of the machine is never quiet
            if time.monotonic() - start > MAX_WAIT_S:
                raise SystemExit(f"the lab's events did not stop within {MAX_WAIT_S} s")
            got = src.poll(0.1)
            got = got[np.isin(got["netns"], inodes)]
            if len(got):
                chunks.append(got)
                last = time.monotonic()
        lost = src.stats().lost
    if lost:
        raise SystemExit(f"{lost} events lost: run again on a quieter machine")
    return keys(np.concatenate(chunks) if chunks else np.empty(0))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    add_against(ap)
    ap.add_argument("--requests", type=int, default=6, help="mesh and VIP requests per run")
    args = ap.parse_args()
    check_against(args.against)
    differ = 0
    with lab_up() as info:
        lab_netns = {ns.inode for ns in info.netns}
        # Untraced: a lab's first requests find no neighbour entries yet, and a SYN may be sent
        # again (events the next runs would not have).
        workload(args.requests)
        for name, flt, netfilter in SETTINGS:
            with object_dir(args.against):
                other = traced(flt, netfilter, args.requests, lab_netns)
            with object_dir(THIS_BUILD):
                this = traced(flt, netfilter, args.requests, lab_netns)
            only_this, only_other = this - other, other - this
            same = not only_this and not only_other
            differ += not same
            print(f"{name:<22} events: this {this.total():4d}, other {other.total():4d}; "
                  + ("the same" if same else f"{only_this.total()} only here, "
                     f"{only_other.total()} only in the other"), flush=True)
            for where, diff in (("here", only_this), ("other", only_other)):
                for key, n in list(diff.items())[:SHOWN]:
                    print(f"  only {where} x{n}: {dict(zip(FIELDS, key, strict=True))}")
    sys.exit(1 if differ else 0)


if __name__ == "__main__":
    main()
