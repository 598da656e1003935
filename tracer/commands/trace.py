"""`swarmtrace trace`: live requests from the kernel, as text blocks or JSON lines."""

from __future__ import annotations

import argparse
import sys
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, ExitStack
from pathlib import Path

from tracer.commands import argtypes
from tracer.errors import RemoteError, TraceFileError
from tracer.gc_pacing import paced_gc
from tracer.model import Request
from tracer.pipeline import Pipeline
from tracer.signals import interrupts_held, stop_signals_as_interrupt
from tracer.sinks.text import JsonSink, Sink, TextSink
from tracer.source import Filter
from tracer.tracefile.ring import KEEP_ON, RingConfig, parse_size, ring_recording

EXAMPLES = """examples:
  swarmtrace trace --port 8080            requests to published port 8080, hop by hop
  swarmtrace trace --json --count 10      10 requests as JSON lines, then exit
  swarmtrace trace --addr 10.0.0.9 --timeout 30
  swarmtrace trace --service vote         every way to service vote: mesh, VIP, its tasks
  swarmtrace trace --filter 'tcp and dst port 8080'   a pcap-filter expression, in the kernel
  swarmtrace trace -w mesh.swt            record while showing; replay later without root
  swarmtrace trace -w mesh.swt -q         record only (lowest overhead)
  swarmtrace trace -w failures/ --ring 256M -q
                                          always on: keep only the windows around failed requests
"""


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("trace", help="trace requests live (needs root)", epilog=EXAMPLES,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    add_filter_args(p)
    p.add_argument("--json", action="store_true", help="one JSON object per request per line")
    p.add_argument("--oneline", action="store_true", help="summary line only, no hop lines")
    p.add_argument("--count", type=argtypes.count, default=0, help="exit after N requests")
    p.add_argument("--timeout", type=float, default=0.0,
                   help="exit after tracing for S seconds (counted once attached)")
    p.add_argument("-q", "--quiet", action="store_true",
                   help="with -w: record only, show nothing (lowest overhead; replay later)")
    # Like BCC tools: show the kernel program the chosen backend would load, then exit.
    p.add_argument("--ebpf", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("-w", "--write", metavar="FILE",
                   help="also record to a trace file (.swt); Ctrl-C finishes it")
    ring = p.add_argument_group("always-on recording (with -w DIR)")
    ring.add_argument("--ring", metavar="SIZE", type=_size,
                      help="record into a ring of files in DIR within SIZE (e.g. 256M) and keep "
                           "only the windows around failed requests, each as its own .swt")
    ring.add_argument("--keep-on", choices=sorted(KEEP_ON), default="failed",
                      help="which requests' windows to keep (default: failed = neither ok nor a "
                           "DNS search step or forward)")
    ring.add_argument("--keep-before", type=_seconds, default=10.0, metavar="S",
                      help="seconds kept before a failed request (default 10)")
    ring.add_argument("--keep-after", type=_seconds, default=5.0, metavar="S",
                      help="seconds kept after it (default 5)")
    p.add_argument("--nftrace", action="store_true",
                   help="name the nftables rule that drops a watched packet, from the "
                        "kernel's trace events: adds a table marking the watched flows "
                        "(meta nftrace set 1) in each iptables-nft netns while tracing")
    add_swarm_args(p)
    p.set_defaults(func=run)


def add_swarm_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--swarm", action="store_true",
                   help="every node's agent (`swarmtrace agent`), at the addresses of this "
                        "manager's node list, merged into one view")
    p.add_argument("--agents", metavar="HOST:PORT,...",
                   help="these agents instead of the manager's node list")
    add_agent_args(p)


def add_agent_args(p: argparse.ArgumentParser) -> None:
    """The agents' port and the deployment's token: agent and collector alike."""
    from tracer.remote.auth import DEFAULT_TOKEN_FILE
    from tracer.remote.wire import DEFAULT_PORT

    p.add_argument("--agent-port", type=int, default=DEFAULT_PORT,
                   help=f"the agents' TCP port (default {DEFAULT_PORT})")
    p.add_argument("--token-file", type=Path, default=DEFAULT_TOKEN_FILE,
                   help=f"the deployment's token, mode 600 (default {DEFAULT_TOKEN_FILE})")


def add_filter_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--port", type=argtypes.port, action="append", default=[],
                   help="port of interest (repeatable); flows keep matching through NAT")
    p.add_argument("--addr", action="append", default=[], help="IPv4 address of interest")
    p.add_argument("--service", action="append", default=[], metavar="NAME",
                   help="a Swarm service (repeatable): its published ports, VIPs and task "
                        "addresses (and DNS for DNS round robin), asked of Docker at start")
    p.add_argument("--filter", default="", metavar="EXPR",
                   help="a pcap-filter expression, as tcpdump takes (e.g. 'tcp and dst port "
                        "8080'): protocol, host and port tests, matched in the kernel where a "
                        "flow is first seen and followed through NAT")
    p.add_argument("--all-packets", action="store_true",
                   help="every packet, not only connection start/end (costs more)")
    p.add_argument("--devices", action="store_true", help="also device rx/tx crossings")
    p.add_argument("--backend", choices=("auto", "core", "bcc"), default="auto",
                   help="probe backend (default: auto)")


def _size(text: str) -> int:
    try:
        return parse_size(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not 0 <= value <= 3600:
        raise argparse.ArgumentTypeError(f"seconds out of range 0-3600: {text!r}")
    return value


def filter_from_args(args: argparse.Namespace) -> Filter:
    ports, addrs = list(args.port), list(args.addr)
    if args.service:
        from tracer.enrich.service_filter import service_match

        match = service_match(args.service)
        ports += [p for p in match.ports if p not in ports]
        addrs += [a for a in match.addrs if a not in addrs]
        print(f"swarmtrace: service {', '.join(args.service)}: ports "
              f"{', '.join(map(str, match.ports)) or '-'}, addresses {', '.join(match.addrs)}",
              file=sys.stderr)
    if args.filter:
        from tracer.pcap_filter import compile_rules

        compile_rules(args.filter)  # a bad expression fails here, before anything attaches
    return Filter(ports=tuple(ports), addrs=tuple(addrs),
                  all_packets=args.all_packets, devices=args.devices, expr=args.filter)


def run(args: argparse.Namespace) -> int:

    if args.ebpf:
        return _print_program(args.backend)
    stop_signals_as_interrupt()
    if args.quiet and not args.write:
        raise TraceFileError("--quiet records without showing: give a file with -w FILE")
    if args.ring and not args.write:
        raise TraceFileError("--ring records into a directory: give it with -w DIR")
    sink = JsonSink(sys.stdout) if args.json else TextSink(sys.stdout, hops=not args.oneline)
    flt = filter_from_args(args)
    if args.nftrace:
        from tracer.diagnose.nftrace import check_filter

        check_filter(flt)
    with open_live(args, flt) as pipe, ExitStack() as stack:
        observe = None
        if args.ring:
            config = RingConfig(Path(args.write), args.ring, args.keep_before, args.keep_after,
                                KEEP_ON[args.keep_on])
            observe = stack.enter_context(ring_recording(pipe, config, flt)).observe
        elif args.write:
            from tracer.tracefile.record import recording

            stack.enter_context(recording(pipe, args.write, flt))
        info = pipe.source.info
        for note in info.notes:
            print(f"swarmtrace: {note}", file=sys.stderr)
        # Printed once everything is attached: scripts wait for this line.
        print(f"swarmtrace: tracing with the {info.backend} backend ({pipe.backend_reason})",
              file=sys.stderr, flush=True)
        # --timeout counts from here: bcc compiles for up to a minute before it traces.
        deadline = time.monotonic() + args.timeout if args.timeout else None
        if args.quiet and observe is None:
            record_only(pipe, deadline)
        else:
            # The ring needs finished requests to know what failed, even when nothing is shown.
            show(pipe, None if args.quiet else sink, args.count, deadline, observe)
        print(footer(pipe), file=sys.stderr)
        for line in cluster_lines(pipe, clocks=True):
            print(f"swarmtrace: {line}", file=sys.stderr)
    sink.close()
    return 0


def footer(pipe: Pipeline) -> str:
    """The last line: events read and events the kernel could not hand over (per CPU)."""
    st = pipe.source.stats()
    line = f"swarmtrace: {pipe.events} events, {st.lost} lost in the kernel"
    if not st.lost:
        return line
    per_cpu = [v for k, v in sorted(st.extra.items()) if k.startswith("lost_cpu")]
    where = f"; per CPU: {' '.join(map(str, per_cpu))}" if per_cpu else ""
    return f"{line} (ring buffer full{where}): requests around them may be incomplete"


def open_live(args: argparse.Namespace, flt: Filter) -> AbstractContextManager[Pipeline]:
    """This kernel's probes, or with --swarm / --agents every node's agent."""
    from tracer.live import open_pipeline, open_swarm_pipeline

    if not (args.swarm or args.agents):
        return open_pipeline(args.backend, flt, getattr(args, "nftrace", False))
    if flt != Filter():
        raise RemoteError("with --swarm the agents filter: give --port/--addr/--service to "
                          "`swarmtrace agent`")
    from tracer.remote.auth import load_token
    from tracer.remote.collector import parse_agents
    from tracer.remote.swarm_nodes import swarm_agents

    token = load_token(args.token_file)
    agents = parse_agents(args.agents, args.agent_port) if args.agents \
        else swarm_agents(args.agent_port)
    return open_swarm_pipeline(agents, token)


def cluster_lines(pipe: Pipeline, clocks: bool = False) -> list[str]:
    """With agents: nodes that lost or regained theirs since last asked; the clocks."""
    from tracer.remote.collector import Collector

    src = pipe.source
    if not isinstance(src, Collector):
        return []
    return src.take_notices() + (src.agent_lines() + src.clock_lines() if clocks else [])


def show(pipe: Pipeline, sink: Sink | None, count: int, deadline: float | None,
         observe: Callable[[list[Request]], None] | None = None,
         stop: threading.Event | None = None) -> None:
    """Write finished requests until `count` of them, the deadline (0/None: forever) or `stop`
    is set (by another thread: the overhead bench runs this very loop).

    `observe` sees every batch of finished requests, empty ones too (the ring's clock).
    """
    with paced_gc() as between_polls:
        _show(pipe, sink, count, _until(deadline, stop), observe, between_polls)


def _until(deadline: float | None, stop: threading.Event | None) -> Callable[[], bool]:
    """True once the deadline has passed or `stop` is set."""
    def over() -> bool:
        return (deadline is not None and time.monotonic() >= deadline) or \
            (stop is not None and stop.is_set())
    return over


def _show(pipe: Pipeline, sink: Sink | None, count: int, over: Callable[[], bool],
          observe: Callable[[list[Request]], None] | None,
          between_polls: Callable[[], None]) -> None:
    shown = 0
    try:
        while not (count and shown >= count):
            between_polls()
            if over():
                break
            for line in cluster_lines(pipe):
                print(f"swarmtrace: {line}", file=sys.stderr, flush=True)
            with interrupts_held():
                reqs = pipe.poll(0.2)
                if observe is not None:
                    observe(reqs)
                if count:
                    reqs = reqs[: count - shown]
                if sink is not None:
                    sink.write_all(reqs)  # one flush per poll, not per request
                shown += len(reqs)
    except KeyboardInterrupt:
        # Events still in the ring are read, requests still in flight shown as they stand.
        reqs = pipe.drain()
        if observe is not None:
            observe(reqs)
        if sink is not None:
            sink.write_all(reqs)


def record_only(pipe: Pipeline, deadline: float | None,
                stop: threading.Event | None = None) -> None:
    """`trace -w -q`: read into the recording (the pipeline's taps) until the deadline, `stop`
    or Ctrl-C; nothing correlated."""
    over = _until(deadline, stop)
    try:
        while not over():
            pipe.pump(0.2)
    except KeyboardInterrupt:
        for _ in pipe.pump_rest():  # into the recording, which the caller then finishes
            pass


def _print_program(backend: str) -> int:
    from tracer.probes import bpf_source_dir
    from tracer.probes.choose import choose

    chosen, _ = choose(backend)
    name = "bcc_probes.c" if chosen == "bcc" else "core.bpf.c"
    src = bpf_source_dir()
    sys.stdout.write((src / "event.h").read_text() + (src / name).read_text())
    return 0
