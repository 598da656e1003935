"""`swarmtrace agent`: trace this node's kernel for collectors (`trace --swarm`) to read."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from pathlib import Path

from tracer.errors import RemoteError

EXAMPLES = """examples:
  swarmtrace agent --new-token /etc/swarmtrace/token     make the deployment's token (once)
  swarmtrace agent                        this node's Docker: its swarm address, its netns
  swarmtrace agent --listen 192.168.1.5 --agent-port 4791 --docker unix:///var/run/docker.sock
  swarmtrace trace --swarm                on a manager: every node's agent, one view
"""


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    from tracer.commands.trace import add_agent_args, add_filter_args

    p = sub.add_parser("agent", help="stream this node's kernel events to collectors (root)",
                       epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_filter_args(p)
    p.add_argument("--listen", metavar="ADDR",
                   help="address to listen on (default: the node's swarm address)")
    add_agent_args(p)
    p.add_argument("--new-token", type=Path, metavar="FILE",
                   help="write a new random token to FILE (mode 600) and exit")
    p.add_argument("--docker", metavar="URL",
                   help="this node's Docker socket (default: the one dockerd running here); "
                        "the agent traces only that daemon's netns and its host netns")
    p.add_argument("--no-docker", action="store_true",
                   help="no Docker on this node: names from netns files, whole kernel")
    p.add_argument("--node", help="the node's name (default: Docker's, else the hostname)")
    p.add_argument("--timeout", type=float, default=0.0, help="exit after S seconds")
    # TEST HOOK, hidden: shift every time this agent reports, to test clock alignment.
    p.add_argument("--clock-offset-ns", type=int, default=0, help=argparse.SUPPRESS)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import socket
    import time

    from tracer.commands.trace import filter_from_args
    from tracer.enrich import open_names
    from tracer.enrich.docker_topology import DOCKER_GONE, DockerNode, local_docker_sockets
    from tracer.gc_pacing import paced_gc
    from tracer.probes.choose import choose, open_source
    from tracer.probes.netns import NETNS_DIRS, NetnsScope
    from tracer.remote.agent import Agent, AgentOptions
    from tracer.remote.auth import load_token, new_token
    from tracer.signals import stop_signals_as_interrupt

    if args.new_token:
        new_token(args.new_token)
        print(f"swarmtrace: new token in {args.new_token} (mode 600)", file=sys.stderr)
        return 0
    stop_signals_as_interrupt()
    token = load_token(args.token_file)
    urls = [] if args.no_docker else [args.docker] if args.docker else local_docker_sockets()
    if len(urls) > 1:
        raise RemoteError(f"{len(urls)} dockerd run here: say which is this node's with "
                          "--docker URL")
    node = None
    if urls:
        try:
            node = DockerNode(urls[0])
        except DOCKER_GONE as err:
            raise RemoteError(f"Docker at {urls[0]} is not answering ({err}): start it, or "
                              "give --listen and no --docker") from err
    host = args.listen or (node.node_addr if node else None)
    if not host:
        raise RemoteError("no swarm address to listen on: give the node's address with "
                          "--listen ADDR")
    scope = listen_ns = None
    if node is not None and node.host_netns is not None:
        scope = NetnsScope(node.host_netns, (node.netns_dir,) if node.netns_dir else ())
        if os.stat(node.host_netns).st_ino != os.stat("/proc/self/ns/net").st_ino:
            listen_ns = node.host_netns
    elif node is not None:
        # In a Swarm task (no host pid namespace: dockerd's pid is not ours to see), the node
        # is what the task was given: the host network and Docker's netns directory.
        scope = NetnsScope(Path("/proc/self/ns/net"), NETNS_DIRS)
    name = args.node or (node.name if node else socket.gethostname())
    flt = filter_from_args(args)
    chosen, why = choose(args.backend)
    opts = AgentOptions(host=host, port=args.agent_port, token=token, node=name,
                        listen_netns=listen_ns, scope=scope,
                        clock_offset_ns=args.clock_offset_ns)
    deadline = time.monotonic() + args.timeout if args.timeout else None
    with open_source(chosen, flt, scope) as source, \
            open_names(urls[:1] if node else None, use_docker=node is not None) as names:
        agent = Agent(opts, source, names, flt)
        if node is not None:
            node.close()
        addr = agent.address
        # Printed once everything is attached and listening: scripts wait for this line.
        print(f"swarmtrace: agent for {name} listening on {addr[0]}:{addr[1]} (tracing with "
              f"the {source.info.backend} backend, {why})", file=sys.stderr, flush=True)
        with contextlib.suppress(KeyboardInterrupt), paced_gc() as between_polls:

            def until() -> bool:  # asked once per read of the source
                between_polls()
                return deadline is not None and time.monotonic() >= deadline

            agent.serve(until=until)
        st = source.stats()
        print(f"swarmtrace: agent for {name}: {st.events} events read ({st.lost} lost, "
              f"{st.filtered} filtered in the kernel, netns hooked "
              f"{st.extra.get('netns_hooked', '-')}), {agent.not_ours} not this node's, "
              f"{agent.unsent} with no collector, {agent.events_sent} sent, "
              f"{agent.refused} collectors refused", file=sys.stderr)
    return 0
