"""Where loss starts: the real program emits into the real ring at exact offered rates
(250 k to 2 M events/s), read by the recorder (`trace -w FILE -q`) or the full live view
(`trace`), for ring buffer sizes from 256 KiB to the default. Lost counts are per CPU.

The load is st_nf_hook run by BPF_PROG_TEST_RUN on the packets of watched requests (66 events
each, see tracer.bench.offered), paced on every CPU by one process each: offered = emitted +
lost, from the program's own per-CPU counters. No lab and no traffic: the source hooks only
an empty netns of its own (a real flood on 2 CPUs offers at most ~240 k events/s)."""

from __future__ import annotations

import argparse
import os
import select
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from tracer.commands import trace
from tracer.enrich import open_names
from tracer.pipeline import Pipeline
from tracer.probes import libbpf
from tracer.probes.core import RING_BYTES, CoreSource
from tracer.probes.netns import NetnsScope, inode
from tracer.sinks.text import TextSink
from tracer.source import Filter
from tracer.tracefile.record import recording

RATES = (250_000, 500_000, 1_000_000, 2_000_000)
RINGS = (256 << 10, 1 << 20, 4 << 20, RING_BYTES)
# The crafted flows' port: no lab uses it, so other tracing on the machine adds no events.
PORT = 18080
FILTER = Filter(ports=(PORT,), all_packets=True)
STARTUP_S = 10.0  # for a driver process to say it is ready, or the empty netns to exist
DRAIN_S = 3.0  # for the consumer to read what is left in the ring after the load
# Loss from a full ring, as against the few events per million the kernel fails to reserve
# at any rate and ring size (0-0.03% here, also with the reader idle and a 64 MiB ring).
OVERFLOW = 0.001


@dataclass(frozen=True)
class Row:
    ring: int
    full: bool
    target: float  # events/s asked of the drivers, all CPUs
    seconds: float  # the drivers' run time
    offered: tuple[int, ...]  # per CPU: emitted + lost
    lost: tuple[int, ...]  # per CPU
    read_during: int  # events the consumer read while the load ran
    read: int  # ... and in all, once it caught up (or DRAIN_S passed)
    reads: int  # non-empty ring reads
    requests: int  # finished requests the full view wrote
    consumer_cpu_s: float

    @property
    def label(self) -> str:
        return "trace" if self.full else "-w -q"

    @property
    def overflowed(self) -> bool:
        return sum(self.lost) > OVERFLOW * sum(self.offered)


@contextmanager
def empty_netns() -> Iterator[NetnsScope]:
    """A netns of our own with nothing in it, for the source to hook: the load needs no
    hook, and hooking the machine's netns would slow other work (other labs) on it."""
    proc = subprocess.Popen(["unshare", "--net", "sleep", "infinity"])
    try:
        path = Path(f"/proc/{proc.pid}/ns/net")
        ours = inode(Path("/proc/self/ns/net"))
        deadline = time.monotonic() + STARTUP_S
        while inode(path) == ours:  # still the child before unshare
            if time.monotonic() > deadline:
                raise RuntimeError(f"unshare --net made no netns in {STARTUP_S:.0f} s")
            time.sleep(0.01)
        yield NetnsScope(host=path, dirs=())
    finally:
        proc.kill()
        proc.wait()


def netfilter_prog_fd() -> int:
    """This process's loaded netfilter program (st_nf_hook of the source under test)."""
    want = f"prog_type:\t{libbpf.BPF_PROG_TYPE_NETFILTER}\n"
    for entry in os.scandir("/proc/self/fdinfo"):
        try:
            if want in Path(entry.path).read_text():
                return int(entry.name)
        except OSError:
            continue
    raise RuntimeError("no netfilter program loaded in this process")


@contextmanager
def drivers(prog_fd: int, rate: float, seconds: float) -> Iterator[list[subprocess.Popen[str]]]:
    """One paced driver per CPU, ready (but not started: write a line to each)."""
    ncpu = os.cpu_count() or 1
    procs: list[subprocess.Popen[str]] = []
    try:
        for cpu in range(ncpu):
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "tracer.bench.offered", "--fd", str(prog_fd),
                 "--cpu", str(cpu), "--rate", str(rate / ncpu), "--seconds", str(seconds),
                 "--first-port", str(20000 + 2000 * cpu), "--dport", str(PORT)],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, pass_fds=(prog_fd,)))
        for cpu, p in enumerate(procs):
            assert p.stdout is not None
            ready, _, _ = select.select([p.stdout], [], [], STARTUP_S)
            if not ready or p.stdout.readline().strip() != "ready":
                raise RuntimeError(f"the load driver for CPU {cpu} was not ready in "
                                   f"{STARTUP_S:.0f} s (exit status {p.poll()})")
        yield procs
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
            p.wait()


def _took(cpu: int, driver: subprocess.Popen[str], seconds: float) -> float:
    """Seconds the driver needed for its paced load; a driver that ran out of time is a
    RuntimeError saying so (a loaded machine: the driver shares its CPU)."""
    try:
        return float(driver.communicate(timeout=seconds + STARTUP_S)[0].split()[3])
    except subprocess.TimeoutExpired:
        raise RuntimeError(
            f"the load driver for CPU {cpu} did not offer {seconds:.0f} s of load within "
            f"{seconds + STARTUP_S:.0f} s: the machine is too busy (load average "
            f"{os.getloadavg()[0]:.1f}); run the bench on a quieter machine") from None


def run_row(scope: NetnsScope, ring: int, full: bool, rate: float, seconds: float) -> Row:
    """The load at `rate` for `seconds` into a `ring`-byte ring read by one consumer."""
    ncpu = os.cpu_count() or 1
    with ExitStack() as stack:
        source = stack.enter_context(CoreSource(FILTER, ring_bytes=ring, scope=scope))
        pipe = Pipeline(source, stack.enter_context(open_names()))
        if full:
            sink = TextSink(stack.enter_context(open(os.devnull, "w")))
        else:
            tmp = Path(stack.enter_context(tempfile.TemporaryDirectory()))
            stack.enter_context(recording(pipe, tmp / "bench.swt", FILTER))
        reads = [0]
        pipe.taps.append(lambda arr: reads.__setitem__(0, reads[0] + 1))
        stop = threading.Event()
        cpu = [0.0]
        requests = [0]

        def consume() -> None:  # the loops of `trace` and `trace -w -q` themselves
            if full:
                trace.show(pipe, sink, 0, None, stop=stop,
                           observe=lambda reqs: requests.__setitem__(0, requests[0] + len(reqs)))
            else:
                trace.record_only(pipe, None, stop)
            cpu[0] = time.thread_time()

        consumer = threading.Thread(target=consume)
        consumer.start()
        try:
            with drivers(netfilter_prog_fd(), rate, seconds) as procs:
                for p in procs:
                    assert p.stdin is not None
                    p.stdin.write("go\n")
                    p.stdin.flush()
                took = [_took(cpu, p, seconds) for cpu, p in enumerate(procs)]
            read_during = pipe.events
            emitted = sum(source.stats().extra[f"emitted_cpu{i}"] for i in range(ncpu))
            deadline = time.monotonic() + DRAIN_S
            while pipe.events < emitted and time.monotonic() < deadline:
                time.sleep(0.05)
        finally:
            stop.set()
            consumer.join()
        extra = source.stats().extra
    lost = tuple(extra[f"lost_cpu{i}"] for i in range(ncpu))
    offered = tuple(extra[f"emitted_cpu{i}"] + n for i, n in enumerate(lost))
    return Row(ring, full, rate, max(took), offered, lost, read_during, pipe.events, reads[0],
               requests[0], cpu[0])


def print_row(r: Row) -> None:
    offered = sum(r.offered) / r.seconds
    per_cpu = " ".join(f"{n / r.seconds / 1e3:.0f}k" for n in r.offered)
    lost = " ".join(map(str, r.lost))
    print(f"{r.ring >> 10:>6} KiB {r.label:<6} {r.target / 1e3:>6.0f}k {offered / 1e3:>7.0f}k "
          f"({per_cpu}) {r.read_during / r.seconds / 1e3:>6.0f}k {sum(r.lost):>9} ({lost}) "
          f"{r.read / max(r.reads, 1):>7.0f} {100 * r.consumer_cpu_s / r.seconds:>4.0f}%"
          + (f" {r.requests / r.seconds / 1e3:6.1f}k" if r.full else ""), flush=True)


def loss_point(scope: NetnsScope, full: bool, rows: list[Row], seconds: float,
               steps: int) -> list[Row]:
    """More rows with the default ring, halving the asked rates between the highest without
    overflow and the lowest with one (rows: those of the grid)."""
    for _ in range(steps):
        ok = max((r.target for r in rows if not r.overflowed), default=0.0)
        lossy = min((r.target for r in rows if r.overflowed and r.target > ok), default=None)
        if lossy is None:
            break
        rows.append(run_row(scope, RING_BYTES, full, (ok + lossy) / 2, seconds))
        print_row(rows[-1])
    return rows


def verdict(full: bool, rows: list[Row]) -> str:
    """Where the consumer's ring overflows, in offered events/s (the drivers may offer less
    than asked on a busy machine: the CPUs are shared with the consumer and everything else)."""
    label = "trace" if full else "-w -q"
    kept = max((sum(r.offered) / r.seconds for r in rows if not r.overflowed), default=0.0)
    over = [sum(r.offered) / r.seconds for r in rows if r.overflowed]
    where = f"lost > {100 * OVERFLOW:.1f}% from {min(over) / 1e3:.0f}k" if over \
        else "no overflow at any rate reached"
    return (f"{label}: kept up at up to {kept / 1e3:.0f}k events/s offered; {where} "
            f"({RING_BYTES >> 20} MiB ring)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seconds", type=float, default=2.0, help="load per row")
    ap.add_argument("--rates", default=",".join(str(r) for r in RATES),
                    help="events/s to offer, all CPUs, comma-separated")
    ap.add_argument("--rings", default=",".join(str(r >> 10) for r in RINGS),
                    help="ring sizes in KiB, comma-separated (powers of 2)")
    ap.add_argument("--steps", type=int, default=2,
                    help="halvings that narrow each consumer's loss point (default ring)")
    args = ap.parse_args()
    rates = [float(r) for r in args.rates.split(",")]
    rings = [int(r) << 10 for r in args.rings.split(",")]
    print(f"every run of st_nf_hook emits one event (--all-packets, port {PORT}), "
          f"{args.seconds:.0f} s per row, {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.2f}")
    print(f"{'ring':>10} {'reader':<6} {'asked':>7} {'offered':>8} (per CPU) {'read/s':>7} "
          f"{'lost':>9} (per CPU) {'batch':>7} {'CPU':>5} requests/s")
    with empty_netns() as scope:
        default: dict[bool, list[Row]] = {False: [], True: []}
        for ring in rings:
            for full in (False, True):
                for rate in rates:
                    r = run_row(scope, ring, full, rate, args.seconds)
                    print_row(r)
                    if ring == RING_BYTES:
                        default[full].append(r)
        for full, rows in default.items():
            if rows:
                print(verdict(full, loss_point(scope, full, rows, args.seconds, args.steps)),
                      flush=True)
    print(f"load average {os.getloadavg()[0]:.2f} at the end")


if __name__ == "__main__":
    try:
        main()
    except RuntimeError as err:  # the machine or the kernel could not give the load
        raise SystemExit(f"bench loss: {err}") from None
