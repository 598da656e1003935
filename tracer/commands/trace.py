"""`swarmtrace trace`: live requests from the kernel, as text blocks or JSON lines."""

from __future__ import annotations

import argparse
import sys
import time
from contextlib import ExitStack

from tracer.errors import TraceFileError
from tracer.pipeline import Pipeline
from tracer.signals import sigterm_as_interrupt
from tracer.sinks.text import JsonSink, Sink, TextSink
from tracer.source import Filter

EXAMPLES = """examples:
  swarmtrace trace --port 8080            requests to published port 8080, hop by hop
  swarmtrace trace --json --count 10      10 requests as JSON lines, then exit
  swarmtrace trace --addr 10.0.0.9 --timeout 30
  swarmtrace trace --service vote         every way to service vote: mesh, VIP, its tasks
  swarmtrace trace --filter 'tcp and dst port 8080'   a pcap-filter expression, in the kernel
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
    p.set_defaults(func=run)


def add_filter_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--port", type=int, action="append", default=[],
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
    from tracer.live import open_pipeline

    if args.ebpf:
        return _print_program(args.backend)
    sigterm_as_interrupt()
    if args.quiet and not args.write:
        raise TraceFileError("--quiet records without showing: give a file with -w FILE")
    sink = JsonSink(sys.stdout) if args.json else TextSink(sys.stdout, hops=not args.oneline)
    deadline = time.monotonic() + args.timeout if args.timeout else None
    flt = filter_from_args(args)
    with open_pipeline(args.backend, flt) as pipe, ExitStack() as stack:
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
        print(footer(pipe), file=sys.stderr)
    sink.close()
    return 0


def footer(pipe: Pipeline) -> str:
    """The last line: events read and events the kernel could not hand over (per CPU)."""
    st = pipe.source.stats()
    per_cpu = [v for k, v in sorted(st.extra.items()) if k.startswith("lost_cpu")]
    where = f" (per CPU: {' '.join(map(str, per_cpu))})" if st.lost and per_cpu else ""
    return f"swarmtrace: {pipe.events} events, {st.lost} lost in the kernel{where}"


def show(pipe: Pipeline, sink: Sink, count: int, deadline: float | None) -> None:
    """Write finished requests until `count` of them or the deadline (0/None: forever)."""
    shown = 0
    try:
        while not (count and shown >= count):
            if deadline is not None and time.monotonic() >= deadline:
                break
            reqs = pipe.poll(0.2)
            if count:
                reqs = reqs[: count - shown]
            sink.write_all(reqs)  # one flush per poll, not per request
            shown += len(reqs)
    except KeyboardInterrupt:
        # Requests still in flight are shown as they stand, not lost.
        sink.write_all(pipe.flush())


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
