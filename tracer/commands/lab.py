"""`swarmtrace lab up|down|status|traffic`: the netns lab shaped like a Swarm node."""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING, Any

from tracer.commands import swarm_lab
from tracer.signals import stop_signals_as_interrupt

if TYPE_CHECKING:
    from tracer.lab import LabInfo

EPILOG = """examples:
  swarmtrace lab up                             build the lab (idempotent)
  swarmtrace lab traffic --count 10             10 requests through the routing mesh
  swarmtrace lab traffic --mode vip --count 4 --interval 0.5 --json
  swarmtrace lab status
  swarmtrace lab down                           remove everything the lab made
the real Docker Swarm lab is `swarmtrace swarmlab up`
"""


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "lab",
        help="build, use and remove the netns lab (routing mesh and VIP, no Docker)",
        description="A lab of network namespaces shaped like a Swarm node's routing mesh and VIP.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="lab_command", metavar="ACTION", required=True)
    up = sub.add_parser("up", help="build the lab, or reuse a healthy one")
    # The swarm lab is `swarmlab up`; these stay for old scripts, out of the help.
    up.add_argument("--swarm", action="store_true", help=argparse.SUPPRESS)
    up.add_argument("--nodes", type=int, default=2, help=argparse.SUPPRESS)
    up.set_defaults(func=run_up)
    sub.add_parser("down", help="remove the lab's netns, servers and state").set_defaults(
        func=run_down
    )
    sub.add_parser("status", help="show whether the lab is up").set_defaults(func=run_status)
    traffic = sub.add_parser("traffic", help="send requests from the lab's client")
    traffic.add_argument(
        "--mode",
        choices=("mesh", "vip", "dnsrr"),
        default="mesh",
        help="mesh: client -> node:8080; vip: vip-client -> 10.0.0.9:80; "
        "dnsrr: the swarm lab's client task -> vote (DNS round robin)",
    )
    traffic.add_argument("--count", type=int, default=10, help="requests, each a new connection")
    traffic.add_argument(
        "--interval", type=float, default=0.0, metavar="S", help="seconds between requests"
    )
    traffic.add_argument("--json", action="store_true", help="one JSON object per answer")
    traffic.set_defaults(func=run_traffic)


def _print_info(info: LabInfo) -> None:
    for ns in info.netns:
        print(f"{ns.name:<20} inode {ns.inode:<11} {ns.role}")
    for note in info.notes:
        print(note)


def run_up(args: argparse.Namespace) -> int:
    from tracer import lab

    if args.swarm:
        return swarm_lab.run_up(args)
    # SIGTERM gets the same tear-down of a half-built lab as Ctrl-C.
    stop_signals_as_interrupt()
    _print_info(lab.up())
    return 0


def run_down(args: argparse.Namespace) -> int:
    from tracer import lab
    from tracer.lab import swarm

    if swarm.load() is not None:
        swarm_lab.run_down(args)
    removed = lab.down()
    for what in removed:
        print(f"removed {what}")
    if not removed:
        print("nothing to remove: the lab is down")
    return 0


def run_status(args: argparse.Namespace) -> int:
    from tracer import lab
    from tracer.lab import swarm
    from tracer.lab.namespaces import lab_namespaces

    if swarm.load() is not None:
        swarm_lab.run_status(args)
    info = lab.status()
    if info is not None:
        print(f"the lab is up (load balancer: {info.lb})")
        _print_info(info)
        return 0
    leftovers = lab_namespaces()
    if leftovers:
        print(f"the lab is half-built ({', '.join(leftovers)}): run `swarmtrace lab down`")
    else:
        print("the lab is down: run `swarmtrace lab up`")
    return 1


def run_traffic(args: argparse.Namespace) -> int:
    from tracer import lab
    from tracer.lab import swarm

    # DNS round robin exists only in the swarm lab; mesh and VIP go to whichever lab is up.
    if args.mode == "dnsrr" or (lab.status() is None and swarm.load() is not None):
        return swarm_lab.run_traffic(args)
    failed = 0
    for answer in lab.iter_traffic(args.mode, args.count, args.interval):
        failed += not answer.ok
        if args.json:
            print(json.dumps(answer.to_json()))
        else:
            result = answer.body if answer.ok else f"error: {answer.error}"
            print(f"{answer.client} -> {answer.target}  {result}")
        sys.stdout.flush()
    return 1 if failed else 0
