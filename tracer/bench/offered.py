"""An exact offered event rate on one CPU: the loaded st_nf_hook (its fd passed in) run by
BPF_PROG_TEST_RUN at a paced rate on the packets of watched requests, each run one real event
into the real ring. Started by tracer.bench.loss, one process per CPU (a thread would wait
for the GIL while the consumer under test holds it).

A request is what the full view turns into one line: a SYN from the client, DATA segments
(with --all-packets every one is an event; the pipeline reads and skips them), and the
server's SYN-ACK back in the client's netns, which ends it. The kernel also frees each test
run's packet, which st_drop reports: one event more per test run (counted as offered, like
every other, by the program's own counters).

Protocol on stdin/stdout: prints "ready" once set up, starts on any line read, prints
"runs N seconds S" when done."""

from __future__ import annotations

import argparse
import ctypes
import os
import struct
import sys
import time

from tracer.bench.nfprog import NF_INET_PRE_ROUTING, TCP_ACK, TCP_SYN, hook_state, tcp_packet
from tracer.probes import libbpf

# Data segments per request: a request of the lab's flood gives ~100 events with
# --all-packets (the packets of one HTTP exchange at every hook of the path).
DATA = 61
RUNS = DATA + 2  # per request
# Client ports taken in turn, as a flood of many connections gives.
FLOWS = 1024


Buffer = ctypes.Array[ctypes.c_char]


def _buffer(data: bytes) -> Buffer:
    return ctypes.create_string_buffer(data, len(data))


def _attr(prog_fd: int, packet: Buffer, ctx: Buffer, repeat: int) -> Buffer:
    """A ready bpf_attr (attr.test, as libbpf.prog_test_run fills it): the paced loop then
    only makes the syscall. It points into packet and ctx: keep them."""
    attr = ctypes.create_string_buffer(80)
    struct.pack_into("<IIIIQQIIIIQQ", attr, 0, prog_fd, 0, len(packet), 0,
                     ctypes.addressof(packet), 0, repeat, 0, len(ctx), 0,
                     ctypes.addressof(ctx), 0)
    return attr


def reply_packet(sport: int, dport: int, flags: int) -> bytes:
    """tcp_packet's frame the other way: from the node back to the lab's client."""
    frame = bytearray(tcp_packet(sport, dport, flags))
    addrs = 14 + 12  # the IP header's source and destination, after the Ethernet header
    frame[addrs:addrs + 8] = frame[addrs + 4:addrs + 8] + frame[addrs:addrs + 4]
    return bytes(frame)


def run_paced(prog_fd: int, rate: float, seconds: float, first_port: int, dport: int) -> int:
    """Runs of the program on this CPU at `rate` per second for `seconds`, a request at a
    time; how many ran. Behind the clock (the CPU was busy elsewhere) it catches up by at
    most 10 ms."""
    ctx = _buffer(hook_state(NF_INET_PRE_ROUTING))
    keep = []  # the packets the attrs point into
    requests = []
    for i in range(FLOWS):
        port = first_port + i
        frames = ((tcp_packet(port, dport, TCP_SYN), 1), (tcp_packet(port, dport, TCP_ACK), DATA),
                  (reply_packet(dport, port, TCP_SYN | TCP_ACK), 1))
        bufs = [(_buffer(f), n) for f, n in frames]
        keep += bufs
        requests.append([_attr(prog_fd, b, ctx, n) for b, n in bufs])
    syscall = ctypes.CDLL(None, use_errno=True).syscall
    done = n = 0
    t0 = time.monotonic()
    end = t0 + seconds
    while (now := time.monotonic()) < end:
        due = rate * (now - t0) - done
        if due < RUNS:
            time.sleep((RUNS - due) / rate)
            continue
        if due > rate * 0.01 + RUNS:  # fell behind: do not make it up in one burst
            done = int(rate * (now - t0) - rate * 0.01)
        for attr in requests[n % FLOWS]:
            if syscall(libbpf.SYS_BPF, libbpf.BPF_PROG_TEST_RUN, attr, len(attr)) < 0:
                e = ctypes.get_errno()
                raise OSError(e, f"BPF_PROG_TEST_RUN: {os.strerror(e)}")
        done += RUNS
        n += 1
    return n * RUNS


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--fd", type=int, required=True, help="st_nf_hook's program fd")
    ap.add_argument("--cpu", type=int, required=True)
    ap.add_argument("--rate", type=float, required=True, help="runs (events) per second")
    ap.add_argument("--seconds", type=float, required=True)
    ap.add_argument("--first-port", type=int, required=True, help="source port of flow 0")
    ap.add_argument("--dport", type=int, required=True, help="the watched port")
    args = ap.parse_args()
    os.sched_setaffinity(0, {args.cpu})
    print("ready", flush=True)
    sys.stdin.readline()
    t0 = time.monotonic()
    runs = run_paced(args.fd, args.rate, args.seconds, args.first_port, args.dport)
    print(f"runs {runs} seconds {time.monotonic() - t0:.3f}", flush=True)


if __name__ == "__main__":
    main()
