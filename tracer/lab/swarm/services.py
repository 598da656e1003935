"""The swarm itself: init/join, the `overlay1` network, the article's services, and traffic."""

from __future__ import annotations

import http.client
import re
import time
from dataclasses import dataclass

import docker
from docker.types import EndpointSpec, ServiceMode

from tracer import slowdown
from tracer.errors import LabError
from tracer.lab.swarm.image import IMAGE
from tracer.lab.swarm.layout import LabNode

NETWORK = "overlay1"
PUBLISHED_PORT = 8080
# Each task writes its own container id into the page it serves (the article's "vote" app).
VOTE_SH = ('mkdir -p /www && echo "Processed by container ID $(hostname)" > /www/index.html'
           " && exec httpd -f -p 80 -h /www")
CLIENT_SH = "exec sleep 2147483647"
ANSWER = re.compile(r"Processed by container ID ([0-9a-f]{12})")
READY_TIMEOUT_S = 420.0  # tasks take minutes to start in the emulated (no KVM) VM lab
GRACE_NS = 1_000_000_000  # busybox as pid 1 ignores SIGTERM: do not wait the default 10 s


@dataclass(frozen=True)
class LabService:
    name: str
    mode: str  # "dnsrr" or "vip"
    replicas: int
    published: int | None = None  # routing-mesh port (VIP services only)


DNSRR_SERVICES = (LabService("vote", "dnsrr", 2), LabService("client", "dnsrr", 1))
IPVS_SERVICES = (LabService("vote-vip", "vip", 2, PUBLISHED_PORT),)
# Which service each traffic mode talks to.
MODE_SERVICE = {"dnsrr": "vote", "vip": "vote-vip", "mesh": "vote-vip"}


@dataclass(frozen=True)
class Answer:
    """One request's outcome: the vote task's container id, or why there was none."""

    ok: bool
    container: str | None
    text: str
    client: str = ""  # "ip:port" of the client's socket, when it is ours (routing mesh)


def form_swarm(nodes: list[LabNode], clients: dict[str, docker.DockerClient]) -> None:
    manager = nodes[0]
    mgr = clients[manager.name]
    try:
        mgr.swarm.init(advertise_addr=manager.addr, listen_addr=f"{manager.addr}:2377",
                       data_path_addr=manager.addr)
        token = mgr.swarm.attrs["JoinTokens"]["Worker"]
        for node in nodes[1:]:
            clients[node.name].swarm.join(
                remote_addrs=[f"{manager.addr}:2377"], join_token=token,
                advertise_addr=node.addr, listen_addr=f"{node.addr}:2377",
                data_path_addr=node.addr)
    except docker.errors.APIError as err:
        raise LabError(f"forming the swarm failed: {err.explanation}") from err
    _wait(lambda: sum(n.attrs["Status"]["State"] == "ready" for n in mgr.nodes.list())
          == len(nodes), "swarm nodes to be ready")


def create_services(mgr: docker.DockerClient, nodes: list[LabNode], ipvs: bool) -> list[str]:
    """Create overlay1 and the services this kernel can carry; wait until all tasks run."""
    try:
        mgr.networks.create(NETWORK, driver="overlay", attachable=True, scope="swarm")
        wanted = [*DNSRR_SERVICES, *(IPVS_SERVICES if ipvs else ())]
        for svc in wanted:
            _create(mgr, svc, nodes)
    except docker.errors.APIError as err:
        raise LabError(f"creating the lab services failed: {err.explanation}") from err
    try:
        _wait(lambda: all(_running(mgr, s) for s in wanted), "service tasks to run")
    except LabError as err:
        raise LabError(f"{err}; {_task_trouble(mgr)}") from err
    return [s.name for s in wanted]


def _task_trouble(mgr: docker.DockerClient) -> str:
    """Why the newest task that is not running is not (Docker's own words)."""
    tasks = [t for s in mgr.services.list() for t in s.tasks()
             if t["Status"]["State"] != "running"]
    if not tasks:
        return "no failed task"
    t = max(tasks, key=lambda t: t["Status"].get("Timestamp", ""))
    st = t["Status"]
    return f"task {t['ID'][:12]}: {st['State']}: {st.get('Err') or st.get('Message', '')}"


def _create(mgr: docker.DockerClient, svc: LabService, nodes: list[LabNode]) -> None:
    is_client = svc.name == "client"
    ports = {svc.published: 80} if svc.published else None
    mgr.services.create(
        IMAGE, ["sh", "-c", CLIENT_SH if is_client else VOTE_SH], name=svc.name,
        networks=[NETWORK], mode=ServiceMode("replicated", replicas=svc.replicas),
        endpoint_spec=EndpointSpec(mode=svc.mode, ports=ports), stop_grace_period=GRACE_NS,
        # The client sits on node1 and the vote tasks spread one per node, so that half
        # the requests cross nodes over the overlay (VXLAN).
        constraints=[f"node.hostname=={nodes[0].name}"] if is_client else None,
        maxreplicas=1 if not is_client and len(nodes) > 1 else None,
    )


def _running(mgr: docker.DockerClient, svc: LabService) -> bool:
    tasks = mgr.services.get(svc.name).tasks(filters={"desired-state": "running"})
    return bool(sum(t["Status"]["State"] == "running" for t in tasks) == svc.replicas)


def _wait(cond: object, what: str) -> None:
    limit = slowdown.scaled(READY_TIMEOUT_S)
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if cond():  # type: ignore[operator]
            return
        time.sleep(0.5)
    raise LabError(f"timed out after {limit:.0f} s waiting for {what}{slowdown.note()}: "
                   "see the daemon logs in /run/swarmtrace-swarm")


def client_container(clients: dict[str, docker.DockerClient]) -> docker.models.containers.Container:
    for client in clients.values():
        found = client.containers.list(filters={"label": "com.docker.swarm.service.name=client"})
        if found:
            return found[0]
    raise LabError("the lab's client task is not running: run `swarmtrace swarmlab up` again")


def request_from_client(container: docker.models.containers.Container, service: str) -> Answer:
    """One HTTP request from inside the client task, resolved by Docker's embedded DNS."""
    # busybox wget's own -T crashes in this build: bound it with timeout instead.
    code, out = container.exec_run(["timeout", "3", "wget", "-qO-", f"http://{service}"])
    return _answer(code == 0, out.decode(errors="replace").strip())


def request_from_host(addr: str, port: int) -> Answer:
    """One HTTP request from the root netns to a node's published port (routing mesh)."""
    conn = http.client.HTTPConnection(addr, port, timeout=3)
    try:
        conn.request("GET", "/")
        ip, sport = conn.sock.getsockname()[:2]
        resp = conn.getresponse()
        return _answer(resp.status == 200, resp.read().decode(errors="replace").strip(),
                       f"{ip}:{sport}")
    except OSError as err:
        return Answer(False, None, str(err))
    finally:
        conn.close()


def _answer(ok: bool, text: str, client: str = "") -> Answer:
    m = ANSWER.search(text)
    return Answer(ok and m is not None, m.group(1) if m else None, text, client)
