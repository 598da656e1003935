"""Where the agents are: every node of the swarm, at its address in the manager's node list."""

from __future__ import annotations

from contextlib import closing

import docker

from tracer.enrich.docker_topology import DOCKER_GONE, local_docker_sockets
from tracer.errors import RemoteError
from tracer.remote.collector import AgentAddr


def swarm_agents(port: int, socket_url: str | None = None) -> list[AgentAddr]:
    """One agent address per node the manager knows (its Status.Addr), named by hostname."""
    urls = [socket_url] if socket_url else local_docker_sockets()
    if not urls:
        raise RemoteError("--swarm reads the node list from a manager's Docker: no dockerd "
                          "here (run it on a manager, or give --agents host:port,...)")
    why = ""
    for url in urls:  # several dockerds on one machine (the lab): the manager's answers
        try:
            with closing(docker.DockerClient(base_url=url, timeout=10)) as client:
                nodes = client.nodes.list()
            break
        except docker.errors.APIError as err:
            why = str(err.explanation)
        except DOCKER_GONE as err:
            why = f"Docker at {url} is not answering ({err})"
    else:
        raise RemoteError(f"cannot list the swarm's nodes ({why}): run it on a manager, or "
                          "give --agents host:port,...")
    out = []
    for n in sorted(nodes, key=lambda n: n.attrs["Description"]["Hostname"]):
        addr = (n.attrs.get("Status") or {}).get("Addr") or ""
        if addr in ("", "0.0.0.0"):  # some managers report this: their raft address is right
            addr = ((n.attrs.get("ManagerStatus") or {}).get("Addr") or "").rsplit(":", 1)[0]
        out.append(AgentAddr(addr, port, n.attrs["Description"]["Hostname"]))
    return out
