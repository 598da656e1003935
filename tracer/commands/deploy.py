"""`swarmtrace deploy` / `undeploy`: an agent on every node, as a Swarm global service."""

from __future__ import annotations

import argparse
import sys
from contextlib import closing

EXAMPLES = """examples:
  swarmtrace deploy                      on a manager: token (made if missing) + global service
  swarmtrace deploy --image swarmtrace:0.1.0 --port 80 --port 53
  swarmtrace deploy --backend bcc        IPVS's own choice: nodes need kprobes and headers
  swarmtrace trace --swarm               then: every node's requests in one view
  swarmtrace undeploy                    removes the service and the secret from every node
"""


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    from tracer.commands.trace import add_agent_args
    from tracer.remote.deploy import DeployOptions

    d = DeployOptions()
    p = sub.add_parser("deploy", help="an agent on every swarm node (global service; manager)",
                       epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--image", default=d.image, help=f"the agent's image (default {d.image})")
    p.add_argument("--port", type=int, action="append", default=[],
                   help="port of interest for every agent (repeatable)")
    p.add_argument("--addr", action="append", default=[], help="address of interest")
    p.add_argument("--backend", choices=("auto", "core", "bcc"), default="auto",
                   help="the agents' probe backend (default auto: bcc on nodes with kprobes, "
                        "kernel headers and BCC, else core)")
    p.add_argument("--docker-socket", default=d.docker_socket, help=argparse.SUPPRESS)
    p.add_argument("--netns-dir", default=d.netns_dir, help=argparse.SUPPRESS)
    # The native lab's netns directories are not on a shared mount (no systemd here).
    p.add_argument("--netns-propagation", default=d.netns_propagation, help=argparse.SUPPRESS)
    # TEST HOOK, hidden: read-only bind mounts NODE_PATH:TASK_PATH for a development image.
    p.add_argument("--mount", action="append", default=[], help=argparse.SUPPRESS)
    add_agent_args(p)
    p.set_defaults(func=run_deploy)
    u = sub.add_parser("undeploy", help="remove the agents' service and secret (manager)")
    u.set_defaults(func=run_undeploy)


def run_deploy(args: argparse.Namespace) -> int:
    import docker

    from tracer.enrich.docker_topology import DOCKER_GONE
    from tracer.errors import RemoteError
    from tracer.remote.auth import load_token, new_token
    from tracer.remote.deploy import DeployOptions, deploy

    token = load_token(args.token_file) if args.token_file.exists() else \
        new_token(args.token_file)
    agent_args = [a for p in args.port for a in ("--port", str(p))]
    agent_args += [a for x in args.addr for a in ("--addr", x)]
    agent_args += ["--backend", args.backend] if args.backend != "auto" else []
    pairs = [m.split(":", 1) for m in args.mount]
    if any(len(m) != 2 for m in pairs):
        raise RemoteError("--mount takes NODE_PATH:TASK_PATH")
    mounts = tuple((src, dst) for src, dst in pairs)
    opts = DeployOptions(image=args.image, port=args.agent_port, agent_args=tuple(agent_args),
                         docker_socket=args.docker_socket, netns_dir=args.netns_dir,
                         netns_propagation=args.netns_propagation,
                         extra_mounts=mounts)
    try:
        with closing(docker.DockerClient(base_url=_socket(), timeout=30)) as client:
            sid = deploy(client, token, opts)
    except DOCKER_GONE as err:
        raise RemoteError(f"Docker is not answering ({err})") from err
    print(f"swarmtrace: deployed service swarmtrace-agent ({sid[:12]}) with {args.image}; "
          f"token in {args.token_file}", file=sys.stderr)
    return 0


def run_undeploy(args: argparse.Namespace) -> int:
    import docker

    from tracer.enrich.docker_topology import DOCKER_GONE
    from tracer.errors import RemoteError
    from tracer.remote.deploy import undeploy

    try:
        with closing(docker.DockerClient(base_url=_socket(), timeout=30)) as client:
            removed = undeploy(client)
    except DOCKER_GONE as err:
        raise RemoteError(f"Docker is not answering ({err})") from err
    print(f"swarmtrace: removed {', '.join(removed) or 'nothing (not deployed)'}",
          file=sys.stderr)
    return 0


def _socket() -> str | None:
    """The manager's Docker: the first local dockerd that is a manager, else the default."""
    import docker

    from tracer.enrich.docker_topology import DOCKER_GONE, local_docker_sockets

    for url in local_docker_sockets():
        try:
            with closing(docker.DockerClient(base_url=url, timeout=10)) as c:
                if (c.info().get("Swarm") or {}).get("ControlAvailable"):
                    return url
        except DOCKER_GONE:
            continue
    return None

