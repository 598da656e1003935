"""`swarmtrace swarmlab up|traffic|status|down`: a real 2-node Docker Swarm on this machine."""

from __future__ import annotations

import argparse
import json
from typing import Any

from tracer.signals import stop_signals_as_interrupt

EPILOG = """examples:
  swarmtrace swarmlab up --nodes 2              two dockerds, a swarm, overlay1, vote + client
  swarmtrace swarmlab traffic --mode dnsrr --count 10
  swarmtrace swarmlab status
  swarmtrace swarmlab down                      the machine as it was before `up`
"""


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "swarmlab",
        help="build, use and remove a real Docker Swarm lab (dockerd per node)",
        description="A real Docker Swarm: node1 in this netns, node2 in netns stlab-node2, "
        "overlay traffic over VXLAN, the services of the article.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="swarmlab_command", metavar="ACTION", required=True)
    up = sub.add_parser("up", help="start the daemons, form the swarm, create the services")
    up.add_argument("--nodes", type=int, default=2, choices=(1, 2), help="swarm nodes")
    up.set_defaults(func=run_up)
    sub.add_parser("down", help="remove the swarm, daemons, netns, bridges, rules").set_defaults(
        func=run_down)
    sub.add_parser("status", help="show whether the lab is up").set_defaults(func=run_status)
    traffic = sub.add_parser("traffic", help="send requests and print who answered")
    traffic.add_argument("--mode", choices=("dnsrr", "vip", "mesh"), default="dnsrr",
                         help="dnsrr/vip: from the client task to vote; mesh: host -> node:8080")
    traffic.add_argument("--count", type=int, default=10, help="requests")
    traffic.add_argument("--json", action="store_true", help="one JSON object per answer")
    traffic.set_defaults(func=run_traffic)


def run_up(args: argparse.Namespace) -> int:
    from tracer.lab import swarm

    # SIGTERM gets the same tear-down of a half-built lab as Ctrl-C.
    stop_signals_as_interrupt()
    lab = swarm.up(nodes=args.nodes, progress=print)
    _print_lab(lab)
    return 0


def _print_lab(lab: Any) -> None:
    for node in lab.nodes:
        where = f"netns {node.netns}" if node.netns else "root netns"
        print(f"{node.name:<6} {node.addr:<15} {where:<18} {node.socket}")
    print(f"services: {', '.join(lab.services)}")


def run_down(args: argparse.Namespace) -> int:
    from tracer.lab import swarm

    problems = swarm.down()
    for p in problems:
        print(f"not removed: {p}")
    return 1 if problems else 0


def run_status(args: argparse.Namespace) -> int:
    from tracer.lab import swarm

    lab = swarm.load()
    if lab is None:
        print("swarm lab: down")
        return 1
    dead = lab.dead_nodes()
    state = f"BROKEN: {', '.join(dead)} not answering" if dead else "up"
    print(f"swarm lab: {state} ({lab.up_seconds:.1f} s to build)")
    _print_lab(lab)
    for note in lab.notes:
        print(note)
    return 1 if dead else 0


def run_traffic(args: argparse.Namespace) -> int:
    from tracer.lab import swarm

    answers = swarm.traffic(args.mode, args.count)
    for i, a in enumerate(answers, 1):
        if args.json:
            print(json.dumps({"n": i, "ok": a.ok, "container": a.container, "text": a.text}))
        else:
            print(f"{i:>3} {a.text if a.ok else 'FAILED: ' + a.text}")
    return 0 if all(a.ok for a in answers) else 1
