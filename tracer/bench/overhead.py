"""Tracing overhead: lab request throughput traced vs untraced, in the same run.

Interleaved rounds of: untraced, the manual peer (tcpdump -w in every netns of the path), and
each front end running its own loop on the live pipeline: the probes with the ring buffer
drained and nothing else done (the kernel side's ceiling), `trace -w -q`, the full `trace`
(text), `trace --json` and the TUI (the real app, headless). Also CPU per request, events per
request, lost events, and BPF run time per program."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import enum
import os
import tempfile
import threading
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from tracer import lab
from tracer.bench.peer import tcpdump_everywhere
from tracer.commands import trace
from tracer.enrich import open_names
from tracer.live import lab_lb_note
from tracer.pipeline import Pipeline
from tracer.probes import libbpf
from tracer.probes.core import RING_BYTES, CoreSource
from tracer.sinks.text import JsonSink, TextSink
from tracer.source import Filter
from tracer.tracefile.record import recording

FILTER = Filter(ports=(8080,), addrs=("10.0.0.9",))


@dataclass
class Traced:
    rate: float
    events: int
    requests: int  # requests the flood completed
    lost: int
    seconds: float
    prog_ns: dict[str, tuple[float, int]]  # program -> (ns per run, runs)
    consumer_cpu_s: float  # CPU time of the thread that reads, decodes and correlates
    process_cpu_s: float  # CPU time of every thread of the tracer (names, recorder ...)
    counters: dict[str, int]  # the source's extra stats: emitted and lost per CPU


class Front(enum.Enum):
    """What reads the pipeline while the lab is flooded: each runs the command's own loop.
    DRAIN is `trace -w -q`'s loop without the recording: the ceiling that the kernel side
    (hooks, programs, ring buffer) leaves every front end."""

    DRAIN = "probes (ring drained)"
    RECORD = "trace -w -q"
    TEXT = "trace (full)"
    JSON = "trace --json"
    TUI = "tui (live)"


# --modes names: the peer, then every front end by its member's name ("record", "text" ...),
# each with the label the results are printed under.
PEER = "peer"
MODES = {PEER: "tcpdump -w (peer)"} | {f.name.lower(): f.value for f in Front}
SETTLE_S = 0.5  # after the flood: the last requests' events read before the front end stops


@dataclass
class _Flood:
    """The lab's flood, with each of the source's BPF programs' run counters around it."""

    mode: str
    seconds: float
    conns: int
    rate: float
    run_stats: Callable[[], dict[str, tuple[int, int]]]
    done: float = 0.0  # requests/s completed
    elapsed: float = 0.0
    before: dict[str, tuple[int, int]] = field(default_factory=dict)
    after: dict[str, tuple[int, int]] = field(default_factory=dict)

    def run(self) -> None:
        self.before = self.run_stats()
        t0 = time.monotonic()
        self.done = lab.flood(self.mode, self.seconds, self.conns, self.rate)  # type: ignore[arg-type]
        self.elapsed = time.monotonic() - t0
        self.after = self.run_stats()


def traced_run(mode: str, seconds: float, conns: int, full: bool, stats: bool = False,
               flt: Filter = FILTER, ring_bytes: int = RING_BYTES, rate: float = 0.0) -> Traced:
    """full: the full `trace` (text); else `trace -w FILE -q` (see front_run)."""
    return front_run(Front.TEXT if full else Front.RECORD, mode, seconds, conns, stats, flt,
                     ring_bytes, rate)


def front_run(front: Front, mode: str, seconds: float, conns: int, stats: bool = False,
              flt: Filter = FILTER, ring_bytes: int = RING_BYTES, rate: float = 0.0) -> Traced:
    """Flood the lab while `front` reads the live pipeline as its command does (text and JSON
    to /dev/null, the recording to a temporary file, the TUI headless).
    stats: measure BPF run time per program (it slows every program run: not for ratios)."""
    stats_fd = libbpf.enable_stats() if stats else -1
    try:
        with ExitStack() as stack:
            source = stack.enter_context(CoreSource(flt, ring_bytes=ring_bytes))
            names = stack.enter_context(open_names())
            pipe = Pipeline(source, names, lab_lb_note())
            flood = _Flood(mode, seconds, conns, rate, source.run_stats)
            out = stack.enter_context(open(os.devnull, "w"))  # text and JSON go nowhere
            if front is Front.RECORD:
                tmp = Path(stack.enter_context(tempfile.TemporaryDirectory()))
                stack.enter_context(recording(pipe, tmp / "bench.swt", flt))
            cpu0 = time.process_time()
            if front is Front.TUI:
                _under_tui(pipe, flood.run)
                consumer_cpu = time.process_time() - cpu0  # the app's threads: all of it
            else:
                consumer_cpu = _in_thread(_command_loop(front, pipe, out), flood.run)
            process_cpu = time.process_time() - cpu0
            st = source.stats()
    finally:
        if stats_fd >= 0:
            os.close(stats_fd)
    prog_ns = {}
    for name, (ns, cnt) in flood.after.items():
        b_ns, b_cnt = flood.before.get(name, (0, 0))
        if cnt - b_cnt:
            prog_ns[name] = ((ns - b_ns) / (cnt - b_cnt), cnt - b_cnt)
    return Traced(flood.done, pipe.events, round(flood.done * seconds), st.lost, flood.elapsed,
                  prog_ns, consumer_cpu, process_cpu, st.extra)


def _command_loop(front: Front, pipe: Pipeline,
                  out: TextIO) -> Callable[[threading.Event], None]:
    """The command's own loop for `front`, to run until the event is set."""
    if front in (Front.DRAIN, Front.RECORD):
        return lambda stop: trace.record_only(pipe, None, stop)
    sink = JsonSink(out) if front is Front.JSON else TextSink(out)
    return lambda stop: trace.show(pipe, sink, 0, None, stop=stop)


def _in_thread(loop: Callable[[threading.Event], None], flood: Callable[[], None]) -> float:
    """Run `loop` in a thread while `flood` runs here; the thread's CPU seconds."""
    stop = threading.Event()
    cpu = [0.0]

    def consume() -> None:
        loop(stop)
        cpu[0] = time.thread_time()

    t = threading.Thread(target=consume, name="bench-consumer")
    t.start()
    try:
        flood()
        time.sleep(SETTLE_S)
    finally:
        stop.set()
        t.join()
    return cpu[0]


def _under_tui(pipe: Pipeline, flood: Callable[[], None]) -> None:
    """The TUI (`swarmtrace tui`'s app, headless) fed by `pipe` while `flood` runs in a thread."""
    from textual.worker import WorkerCancelled

    from tracer.commands.tui import describe
    from tracer.tui.app import SwarmtraceApp
    from tracer.tui.pipeline_feed import PipelineFeed

    async def run() -> None:
        app = SwarmtraceApp(PipelineFeed(pipe, filters=describe(FILTER)), title="swarmtrace")
        async with app.run_test(size=(120, 40)) as pilot:
            await asyncio.to_thread(flood)
            await pilot.pause(SETTLE_S)
            # The feed thread polls the source: done with it before the source closes.
            feed = [w for w in app.workers if w.group == "feed"]
            for w in feed:
                w.cancel()
            for w in feed:
                with contextlib.suppress(WorkerCancelled):
                    await w.wait()

    asyncio.run(run())


def peer_run(mode: str, seconds: float, conns: int) -> tuple[float, float]:
    """Flood while tcpdump writes every netns of the path: req/s, tcpdump CPU s per request."""
    with tempfile.TemporaryDirectory(prefix="swt-peer-") as d, \
            tcpdump_everywhere(mode, Path(d)) as peer:
        cpu0 = peer.cpu_s()
        t0 = time.monotonic()
        rate = lab.flood(mode, seconds, conns)  # type: ignore[arg-type]
        requests = max(rate * (time.monotonic() - t0), 1.0)
        return rate, (peer.cpu_s() - cpu0) / requests


def _modes(text: str) -> list[str]:
    modes = [m.strip() for m in text.split(",") if m.strip()]
    if not modes or any(m not in MODES for m in modes):
        raise argparse.ArgumentTypeError(f"modes are a comma-separated list of "
                                         f"{', '.join(MODES)}: {text!r}")
    return modes


def one_round(name: str, args: argparse.Namespace) -> tuple[float, float, Traced | None]:
    """Requests/s and whole-process CPU seconds per request with `name` running."""
    if name == PEER:
        return *peer_run(args.mode, args.seconds, args.conns), None
    t = front_run(Front[name.upper()], args.mode, args.seconds, args.conns)
    return t.rate, t.process_cpu_s / max(t.requests, 1), t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--mode", default="mesh", choices=("mesh", "vip"))
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--conns", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--modes", type=_modes, default=list(MODES),
                    help=f"what runs beside untraced, comma-separated (default: all: "
                         f"{','.join(MODES)})")
    args = ap.parse_args()
    was_up = lab.status() is not None
    lab.up()
    try:
        lab.flood(args.mode, 1.0, args.conns)  # warm up
        print(f"mode {args.mode}, {args.conns} concurrent connections, new connection per "
              f"request, {args.seconds:.0f} s x {args.rounds} rounds, filter port 8080 + VIP, "
              f"load average {os.getloadavg()[0]:.2f} at start")
        base: list[float] = []
        runs: dict[str, list[tuple[float, float, Traced | None]]] = {m: [] for m in args.modes}
        for i in range(args.rounds):  # interleaved, so drifting background load hits all
            base.append(lab.flood(args.mode, args.seconds, args.conns))
            for m in args.modes:
                runs[m].append(one_round(m, args))
            print(f"round {i + 1}: untraced {base[-1]:.0f} req/s; ratios: " + ", ".join(
                f"{MODES[m]} {runs[m][-1][0] / base[-1]:.3f}" for m in args.modes), flush=True)
        untraced = sum(base) / len(base)
        print(f"untraced              {untraced:7.0f} req/s")
        for m in args.modes:
            rates = [r for r, _, _ in runs[m]]
            rate = sum(rates) / len(rates)
            worst = min(r / b for r, b in zip(rates, base, strict=True))
            print(f"{MODES[m]:<21} {rate:7.0f} req/s   ratio {rate / untraced:.3f} "
                  f"(worst round {worst:.3f})")
        print("user-space CPU per request (whole process): " + ", ".join(
            f"{MODES[m]} {1e6 * sum(c for _, c, _ in runs[m]) / len(runs[m]):.0f} us"
            for m in args.modes))
        traced = [t for m in args.modes for _, _, t in runs[m] if t is not None]
        if "text" in args.modes:
            _detail(args, traced, [t for _, _, t in runs.get("record", []) if t is not None])
        print(f"load average {os.getloadavg()[0]:.2f} at the end")
    finally:
        if not was_up:
            lab.down()


def _detail(args: argparse.Namespace, traced: list[Traced], record: list[Traced]) -> None:
    """Events, consumer CPU and BPF run time, from one more full `trace` run with stats on."""
    t = front_run(Front.TEXT, args.mode, args.seconds, args.conns, stats=True)
    reqs = max(t.requests, 1)
    lost = sum(r.lost for r in traced) + t.lost
    print(f"events    {t.events} = {t.events / reqs:.1f} per request, "
          f"{t.events / t.seconds:.0f} events/s, lost {lost} in all traced runs")
    line = f"consumer  {1e6 * t.consumer_cpu_s / reqs:.0f} us CPU per request (full trace)"
    if record:
        line += (f", {1e6 * record[-1].consumer_cpu_s / max(record[-1].requests, 1):.0f} us "
                 "(record only)")
    print(line)
    # Measured in an extra run with kernel.bpf_stats on (it adds two clock reads per run).
    for name, (ns, count) in sorted(t.prog_ns.items()):
        print(f"bpf       {name:<12} {ns:5.0f} ns per run, {count / reqs:5.1f} runs/request")


if __name__ == "__main__":
    main()
