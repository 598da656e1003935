"""`swarmtrace deploy` / `undeploy`: an agent on every node through Swarm itself.

Choice: a global service with capabilities, not a launcher. Swarm services cannot be
--privileged nor share the host's pid namespace; measured on Docker 20.10 here, the agent
needs only CAP_SYS_ADMIN (bpf() on engines without CAP_BPF, setns into the sandboxes) and
CAP_NET_ADMIN (BPF netfilter links), which services accept (API 1.41), and Docker's default
seccomp profile lets bpf() and setns() through once CAP_SYS_ADMIN is there. A launcher
(a service that `docker run`s a privileged container) would start containers Swarm does not
know: a launcher killed before its clean-up leaves its agent running, which breaks
"undeploy leaves nothing". With a service, Swarm itself removes every task, and a task's
BPF links go with its process. New nodes get a task by themselves (global mode).

The node's view from inside the task: the host network (so the node's swarm address to
listen on), the mounts of tracer/container_run.py (as for `docker run`), and the token as a
Swarm secret, readable by root only.

No registry needed: an image that the manager has only from `docker load` (no repository
digest) is given to Swarm by its ID. Workers then use their own copy (loaded from the same
archive, so the same ID) without trying to pull, as they do for a tag: that pull could only
fail, after a wait, or reach a registry the user did not name.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import docker
from docker.types import Mount, SecretReference, ServiceMode

from tracer import __version__
from tracer.container_run import CAPABILITIES, NETNS_IN_CONTAINER, NODE_PATHS, SOCKET_IN_CONTAINER
from tracer.enrich.docker_topology import DOCKER_GONE
from tracer.errors import RemoteError
from tracer.remote.wire import DEFAULT_PORT

log = logging.getLogger(__name__)

SERVICE = "swarmtrace-agent"
SECRET = "swarmtrace-token"
LABEL = "io.swarmtrace.deploy"
TOKEN_IN_TASK = f"/run/secrets/{SECRET}"
UNDEPLOY_TIMEOUT_S = 60.0


def default_image() -> str:
    return f"swarmtrace:{__version__}"


@dataclass(frozen=True)
class DeployOptions:
    image: str = field(default_factory=default_image)
    port: int = DEFAULT_PORT
    agent_args: tuple[str, ...] = ()  # filters for every agent: --port 80 --port 53 ...
    # Paths on the nodes; Swarm's templates work here ({{.Node.Hostname}}).
    docker_socket: str = "/var/run/docker.sock"
    netns_dir: str = "/var/run/docker/netns"
    # Sandboxes made after the task started reach it only through mount propagation, which
    # needs the node's netns directory on a shared mount (systemd hosts: / is shared).
    netns_propagation: str = "rslave"
    extra_mounts: tuple[tuple[str, str], ...] = ()  # (node path, task path), read-only


def _manager(client: docker.DockerClient) -> None:
    try:
        info = client.info()
    except DOCKER_GONE as err:
        raise RemoteError(f"Docker is not answering ({err})") from err
    if not (info.get("Swarm") or {}).get("ControlAvailable"):
        raise RemoteError("deploy and undeploy run on a swarm manager: this Docker is not one")


def deploy(client: docker.DockerClient, token: bytes, opts: DeployOptions) -> str:
    """Create the token secret and the global agent service; returns the service id."""
    _manager(client)
    if client.services.list(filters={"name": SERVICE}):
        raise RemoteError(f"already deployed: service {SERVICE} exists (swarmtrace undeploy "
                          "first to change it)")
    for old in client.secrets.list(filters={"name": SECRET}):
        old.remove()  # a secret left by an interrupted deploy: not in use by any service
    secret = client.secrets.create(name=SECRET, data=token, labels={LABEL: __version__})
    mounts = [
        Mount(SOCKET_IN_CONTAINER, opts.docker_socket, type="bind"),
        Mount(NETNS_IN_CONTAINER, opts.netns_dir, type="bind",
              propagation=opts.netns_propagation or None),
        *(Mount(path, path, type="bind", read_only=True) for path in NODE_PATHS),
        *(Mount(dst, src, type="bind", read_only=True) for src, dst in opts.extra_mounts),
    ]
    image = _pinned(client, opts.image)
    try:
        service = client.services.create(
            image,
            command=["swarmtrace", "agent", "--token-file", TOKEN_IN_TASK, "--agent-port",
                     str(opts.port), "--docker", f"unix://{SOCKET_IN_CONTAINER}",
                     *opts.agent_args],
            name=SERVICE, mode=ServiceMode("global"), networks=["host"],
            cap_add=[f"CAP_{c}" for c in CAPABILITIES], mounts=mounts,
            labels={LABEL: __version__, f"{LABEL}.image": opts.image},
            container_labels={LABEL: __version__},
            secrets=[SecretReference(secret.id, SECRET, uid="0", gid="0", mode=0o400)],
        )
    except docker.errors.APIError as err:
        secret.remove()
        raise RemoteError(f"creating service {SERVICE} failed: {err.explanation}") from err
    return str(service.id)


def _pinned(client: docker.DockerClient, image: str) -> str:
    """The image as Swarm should be given it: its ID when the manager has it only from
    `docker load` (see the module's doc), else the name as the user gave it."""
    try:
        local = client.images.get(image)
    except docker.errors.ImageNotFound:
        return image  # from a registry, then: every node pulls it
    if local.attrs.get("RepoDigests"):
        return image  # pushed somewhere: nodes that lack it can pull it
    log.info("%s is a local image: giving Swarm its ID %s", image, local.id)
    return str(local.id)


def undeploy(client: docker.DockerClient, timeout_s: float = UNDEPLOY_TIMEOUT_S) -> list[str]:
    """Remove the service, wait for its tasks to be gone from every node, remove the secret.
    Returns what was removed (empty: nothing was deployed)."""
    _manager(client)
    removed = []
    ids = []
    for svc in client.services.list(filters={"name": SERVICE}):
        ids.append(svc.id)
        svc.remove()
        removed.append(f"service {SERVICE}")
    # Swarm keeps a removed service's tasks until their nodes removed the containers: then
    # every agent process, and with it every BPF link it held, is gone.
    deadline = time.monotonic() + timeout_s
    while ids and _tasks_left(client, ids):
        if time.monotonic() > deadline:
            raise RemoteError(f"{SERVICE}'s tasks are still shutting down after "
                              f"{timeout_s:.0f} s: `docker node ps` shows which node lags")
        time.sleep(0.5)
    for s in client.secrets.list(filters={"name": SECRET}):
        s.remove()
        removed.append(f"secret {SECRET}")
    return removed


def _tasks_left(client: docker.DockerClient, service_ids: list[str]) -> bool:
    """Swarm deletes a removed service's task once its node removed the container."""
    return any(t.get("ServiceID") in service_ids for t in client.api.tasks())
