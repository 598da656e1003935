"""`swarmtrace check`: Docker's intended state (or the netns lab's) against the kernel's."""

from __future__ import annotations

import argparse
import json
import os
import sys

from tracer.errors import TopologyError

EXAMPLES = """examples:
  swarmtrace check                    every node and sandbox this machine runs
  swarmtrace check --service vote     only what touches service vote
  swarmtrace check --json             one JSON object: notes, counts, findings

Each mismatch is one line: node, sandbox, what Docker expects, what the kernel has, the
command that repairs it and the moby issue it matches. check changes nothing.
Exit status: 0 nothing wrong, 1 mismatches found.

"""


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("check", help="compare Docker's intended state with the kernel's "
                       "(needs root)", epilog=EXAMPLES,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--service", metavar="NAME", help="only the checks that touch this service")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from tracer.diagnose.state_check import Report, check

    if os.geteuid() != 0:
        raise TopologyError("check needs root (it reads every sandbox's netns): run with sudo")
    reports: list[Report] = [check(intent, args.service) for intent in _intents()]
    if args.json:
        json.dump({"reports": [r.to_json() for r in reports]}, sys.stdout)
        sys.stdout.write("\n")
    else:
        for r in reports:
            for note in r.notes:
                print(f"swarmtrace: {note}", file=sys.stderr)
            for f in r.findings:
                print(f.line())
            print(f"swarmtrace check ({r.source}): {r.nodes} node(s), {r.sandboxes} sandboxes, "
                  f"{r.checks} checks: " + (f"{len(r.findings)} wrong" if r.findings
                                            else "nothing wrong"), file=sys.stderr)
    return 1 if any(r.findings for r in reports) else 0


def _intents() -> list:  # type: ignore[type-arg]
    """Whatever runs here: Docker's swarm, the netns lab, or both."""
    from tracer.diagnose.intent import Intent
    from tracer.enrich.docker_topology import local_docker_sockets
    from tracer.lab.netns_lab import built

    found: list[Intent] = []
    if sockets := local_docker_sockets():
        from tracer.diagnose.docker_intent import docker_intent

        found.append(docker_intent(sockets))
    if (info := built()) is not None:
        from tracer.diagnose.lab_intent import lab_intent

        found.append(lab_intent(info))
    if not found:
        raise TopologyError("nothing to check: no dockerd runs here and the netns lab is not up "
                            "(swarmtrace lab up, or start Docker)")
    return found
