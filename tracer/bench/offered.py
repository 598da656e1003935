"""An exact offered event rate on one CPU: the loaded st_nf_hook (its fd passed in) run by
BPF_PROG_TEST_RUN at a paced rate on a watched packet, each run one real event into the real
ring. Started by tracer.bench.loss, one process per CPU (a thread would wait for the GIL
while the consumer under test holds it).

Protocol on stdin/stdout: prints "ready" once set up, starts on any line read, prints
"runs N seconds S" when done."""

from __future__ import annotations

import argparse
import ctypes
import os
import struct
import sys
import time

from tracer.bench.nfprog import NF_INET_PRE_ROUTING, TCP_ACK, hook_state, tcp_packet
from tracer.probes import libbpf

# Runs per test-run call: one flow's packets in a row, few enough that even the smallest ring
# measured (256 KiB, ~3k events) takes many calls to fill.
BURST = 64
# Flows taken in turn (one source port each), as a flood of many connections gives.
FLOWS = 1024


Buffer = ctypes.Array[ctypes.c_char]


def _attr(prog_fd: int, packet: Buffer, ctx: Buffer) -> Buffer:
    """A ready bpf_attr (attr.test, as libbpf.prog_test_run fills it) for BURST runs: the
    paced loop then only makes the syscall. It points into packet and ctx: keep them."""
    attr = ctypes.create_string_buffer(80)
    struct.pack_into("<IIIIQQIIIIQQ", attr, 0, prog_fd, 0, len(packet), 0,
                     ctypes.addressof(packet), 0, BURST, 0, len(ctx), 0,
                     ctypes.addressof(ctx), 0)
    return attr


def run_paced(prog_fd: int, rate: float, seconds: float, first_port: int, dport: int) -> int:
    """Runs of the program on this CPU at `rate` per second for `seconds`; how many ran.
    Behind the clock (the CPU was busy elsewhere) it catches up by at most 10 ms."""
    state = hook_state(NF_INET_PRE_ROUTING)
    ctx = ctypes.create_string_buffer(state, len(state))
    frames = [tcp_packet(first_port + i, dport, TCP_ACK) for i in range(FLOWS)]
    packets = [ctypes.create_string_buffer(f, len(f)) for f in frames]
    attrs = [_attr(prog_fd, p, ctx) for p in packets]
    syscall = ctypes.CDLL(None, use_errno=True).syscall
    size = len(attrs[0])
    done = calls = 0
    t0 = time.monotonic()
    end = t0 + seconds
    while (now := time.monotonic()) < end:
        due = rate * (now - t0) - done
        if due < BURST:
            time.sleep((BURST - due) / rate)
            continue
        if due > rate * 0.01 + BURST:  # fell behind: do not make it up in one burst
            done = int(rate * (now - t0) - rate * 0.01)
        if syscall(libbpf.SYS_BPF, libbpf.BPF_PROG_TEST_RUN, attrs[calls % FLOWS], size) < 0:
            e = ctypes.get_errno()
            raise OSError(e, f"BPF_PROG_TEST_RUN: {os.strerror(e)}")
        done += BURST
        calls += 1
    return calls * BURST


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
