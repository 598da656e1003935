"""`swarmtrace trace`: live requests from the kernel, as text blocks or JSON lines."""

from __future__ import annotations

import argparse
import sys
import time
from contextlib import AbstractContextManager, ExitStack
from pathlib import Path

from tracer.errors import RemoteError, TraceFileError
from tracer.pipeline import Pipeline
from tracer.signals import sigterm_as_interrupt
from tracer.sinks.text import JsonSink, Sink, TextSink
from tracer.source import Filter

EXAMPLES = """examples:
  swarmtrace trace --port 8080            requests to published port 8080, hop by hop
  swarmtrace trace --json --count 10      10 requests as JSON lines, then exit
  swarmtrace trace --addr 10.0.0.9 --timeout 30
  swarmtrace trace --service vote         every way to service vote: mesh, VIP, its tasks
  swarmtrace trace -w mesh.swt            record while showing; replay later without root
  swarmtrace trace -w mesh.swt -q         record only (lowest overhead)
"""


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("trace", help="trace requests live (needs root)", epilog=EXAMPLES,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    add_filter_args(p)
    p.add_argument("--json", action="store_true", help="one JSON object per request per line")
    p.add_argument("--oneline", action="store_true", help="summary line only, no hop lines")
    p.add_argument("--count", type=int, default=0, help="exit after N requests")
    p.add_argument("--timeout", type=float, default=0.0, help="exit after S seconds")
    p.add_argument("-q", "--quiet", action="store_true",
                   help="with -w: record only, show nothing (lowest overhead; replay later)")
    # Like BCC tools: show the kernel program the chosen backend would load, then exit.
    p.add_argument("--ebpf", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("-w", "--write", metavar="FILE",
                   help="also record to a trace file (.swt); Ctrl-C finishes it")
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
    p.add_argument("--port", type=int, action="append", default=[],
                   help="port of interest (repeatable); flows keep matching through NAT")
    p.add_argument("--addr", action="append", default=[], help="IPv4 address of interest")
    p.add_argument("--service", action="append", default=[], metavar="NAME",
                   help="a Swarm service (repeatable): its published ports, VIPs and task "
                        "addresses (and DNS for DNS round robin), asked of Docker at start")
    p.add_argument("--all-packets", action="store_true",
                   help="every packet, not only connection start/end (costs more)")
    p.add_argument("--devices", action="store_true", help="also device rx/tx crossings")
    p.add_argument("--backend", choices=("auto", "core", "bcc"), default="auto",
                   help="probe backend (default: auto)")


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
    return Filter(ports=tuple(ports), addrs=tuple(addrs),
                  all_packets=args.all_packets, devices=args.devices)


def run(args: argparse.Namespace) -> int:

    if args.ebpf:
        return _print_program(args.backend)
    sigterm_as_interrupt()
    if args.quiet and not args.write:
        raise TraceFileError("--quiet records without showing: give a file with -w FILE")
    sink = JsonSink(sys.stdout) if args.json else TextSink(sys.stdout, hops=not args.oneline)
    deadline = time.monotonic() + args.timeout if args.timeout else None
    flt = filter_from_args(args)
    with open_live(args, flt) as pipe, ExitStack() as stack:
        if args.write:
            from tracer.tracefile.record import recording

            stack.enter_context(recording(pipe, args.write, flt))
        info = pipe.source.info
        for note in info.notes:
            print(f"swarmtrace: {note}", file=sys.stderr)
        # Printed once everything is attached: scripts wait for this line.
        print(f"swarmtrace: tracing with the {info.backend} backend ({pipe.backend_reason})",
              file=sys.stderr, flush=True)
        if args.quiet:
            _record_only(pipe, deadline)
        else:
            show(pipe, sink, args.count, deadline)
        for line in cluster_lines(pipe, clocks=True):
            print(f"swarmtrace: {line}", file=sys.stderr)
    sink.close()
    return 0


def open_live(args: argparse.Namespace, flt: Filter) -> AbstractContextManager[Pipeline]:
    """This kernel's probes, or with --swarm / --agents every node's agent."""
    from tracer.live import open_pipeline, open_swarm_pipeline

    if not (args.swarm or args.agents):
        return open_pipeline(args.backend, flt)
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


def show(pipe: Pipeline, sink: Sink, count: int, deadline: float | None) -> None:
    """Write finished requests until `count` of them or the deadline (0/None: forever)."""
    shown = 0
    try:
        while not (count and shown >= count):
            if deadline is not None and time.monotonic() >= deadline:
                break
            for line in cluster_lines(pipe):
                print(f"swarmtrace: {line}", file=sys.stderr, flush=True)
            for req in pipe.poll(0.2):
                sink.write(req)
                shown += 1
                if count and shown >= count:
                    return
    except KeyboardInterrupt:
        # Requests still in flight are shown as they stand, not lost.
        for req in pipe.flush():
            sink.write(req)


def _record_only(pipe: Pipeline, deadline: float | None) -> None:
    try:
        while deadline is None or time.monotonic() < deadline:
            pipe.pump(0.2)
    except KeyboardInterrupt:
        pass  # the recording is finished by the caller's context


def _print_program(backend: str) -> int:
    from tracer.probes import BPF_DIR
    from tracer.probes.choose import choose

    chosen, _ = choose(backend)
    name = "bcc_probes.c" if chosen == "bcc" else "core.bpf.c"
    sys.stdout.write((BPF_DIR / "event.h").read_text() + (BPF_DIR / name).read_text())
    return 0
