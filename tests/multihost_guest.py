"""Steps run INSIDE one guest of the two-VM swarm (tests/test_multihost_vm.py drives them).

    python tests/multihost_guest.py STEP [args]

Each step prints one JSON object as its last line. The guest's Docker is a plain one: default
socket, data root and netns directory, as on a real node. Its proxy is a closed local port, so
a pull fails at once and nothing leaves the guest; unlike the swarm lab's daemons it is not
told to prefer local images, so `swarmtrace deploy` has to manage without a registry itself.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from contextlib import closing, suppress
from pathlib import Path
from typing import Any

import docker
from docker.types import EndpointSpec, ServiceMode

from tracer import slowdown
from tracer.lab.swarm.daemons import DAEMON_ENV, DOCKERD
from tracer.lab.swarm.image import IMAGE, import_image, rootfs_tar
from tracer.lab.swarm.services import (
    CLIENT_SH,
    GRACE_NS,
    NETWORK,
    PUBLISHED_PORT,
    VOTE_SH,
    request_from_client,
    request_from_host,
)

SOCKET = "unix:///var/run/docker.sock"
NETNS_DIR = Path("/var/run/docker/netns")
WORK = Path("/tmp/multihost")  # the guest's own /tmp: gone with the guest
DOCKERD_TIMEOUT_S = 120.0
TASKS_TIMEOUT_S = 420.0
READY = "swarmtrace: tracing with"
IPVS_CONN = re.compile(r"\s*TCP\s+\S+\s+\S+\s+(\S+)\s+(\S+)\s+(\S+)")


def done(result: dict[str, Any]) -> None:
    print(json.dumps(result), flush=True)


def wait(cond: Callable[[], bool], what: str, limit_s: float) -> float:
    """Seconds until cond() held; SystemExit saying what was slow."""
    limit = slowdown.scaled(limit_s)
    t0 = time.monotonic()
    while not cond():
        if time.monotonic() - t0 > limit:
            raise SystemExit(f"{what}: not within {limit:.0f} s{slowdown.note()}")
        time.sleep(0.3)
    return time.monotonic() - t0


def client() -> docker.DockerClient:
    return docker.DockerClient(base_url=SOCKET, timeout=60)


def step_link(args: argparse.Namespace) -> None:
    """Name the node, put its address on the link NIC (found by its MAC)."""
    subprocess.run(["hostname", args.hostname], check=True)
    nics = [p.name for p in Path("/sys/class/net").iterdir()
            if (p / "address").read_text().strip() == args.mac]
    if not nics:
        raise SystemExit(f"no NIC with MAC {args.mac}: was the guest booted with the link?")
    subprocess.run(["ip", "addr", "add", args.addr, "dev", nics[0]], check=True)
    subprocess.run(["ip", "link", "set", nics[0], "up"], check=True)
    done({"nic": nics[0]})


def step_ping(args: argparse.Namespace) -> None:
    # Link-local neighbours come up within a few pings even under emulation.
    res = subprocess.run(["busybox", "ping", "-c", "3", "-W", "5", args.addr],
                         capture_output=True, text=True, check=False)
    rtts = [float(x) for x in re.findall(r"time=([\d.]+) ms", res.stdout)]
    if res.returncode != 0:
        raise SystemExit(f"ping {args.addr} failed: {res.stdout}{res.stderr}")
    done({"rtt_ms": rtts})


def _spawn_dockerd(log: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in DAEMON_ENV.items() if k != "DOCKER_SERVICE_PREFER_OFFLINE_IMAGE"}
    with log.open("ab") as logf:
        return subprocess.Popen([str(DOCKERD), "--bridge", "none", "--shutdown-timeout", "3",
                                 "--log-level", "warn"], stdin=subprocess.DEVNULL,
                                stdout=logf, stderr=logf, env=env, start_new_session=True)


def step_dockerd(args: argparse.Namespace) -> None:
    """Start the node's dockerd (left running after this step) and wait until it answers."""
    WORK.mkdir(parents=True, exist_ok=True)
    log = WORK / "dockerd.log"
    t0 = time.monotonic()
    # As systemd leaves a real host: shared mounts, so that the agent task's rslave mount of
    # Docker's netns directory shows it the sandboxes made after it started.
    subprocess.run(["mount", "--make-rshared", "/"], check=True)
    proc = _spawn_dockerd(log)
    limit = slowdown.scaled(DOCKERD_TIMEOUT_S)
    while True:
        if proc.poll() is not None:
            # dockerd gives containerd ~10 s to start, short under emulation; the containerd
            # it started keeps coming up and the next dockerd reuses it.
            if "timeout waiting for containerd" in log.read_text(errors="replace"):
                proc = _spawn_dockerd(log)
                continue
            raise SystemExit(f"dockerd exited ({proc.returncode}): {log.read_text()[-500:]}")
        with suppress(docker.errors.DockerException), closing(client()) as c:
            c.ping()
            break
        if time.monotonic() - t0 > limit:
            raise SystemExit(f"dockerd did not answer within {limit:.0f} s{slowdown.note()}")
        time.sleep(0.5)
    with closing(client()) as c:
        import_image(c, rootfs_tar())  # the test services' image (busybox)
    done({"seconds": round(time.monotonic() - t0, 1)})


def step_init(args: argparse.Namespace) -> None:
    with closing(client()) as c:
        c.swarm.init(advertise_addr=args.addr, listen_addr=f"{args.addr}:2377",
                     data_path_addr=args.addr)
        done({"token": c.swarm.attrs["JoinTokens"]["Worker"]})


def step_join(args: argparse.Namespace) -> None:
    with closing(client()) as c:
        c.swarm.join(remote_addrs=[f"{args.manager}:2377"], join_token=args.token,
                     advertise_addr=args.addr, listen_addr=f"{args.addr}:2377",
                     data_path_addr=args.addr)
    done({})


def step_nodes(args: argparse.Namespace) -> None:
    """Wait until the manager sees `count` ready nodes; their names and addresses."""
    with closing(client()) as c:
        def ready() -> bool:
            return sum(n.attrs["Status"]["State"] == "ready" for n in c.nodes.list()) \
                == args.count
        secs = wait(ready, f"{args.count} ready swarm nodes", TASKS_TIMEOUT_S)
        done({"seconds": round(secs, 1),
              "nodes": {n.attrs["Description"]["Hostname"]: n.attrs["Status"]["Addr"]
                        for n in c.nodes.list()}})


def step_load(args: argparse.Namespace) -> None:
    t0 = time.monotonic()
    out = subprocess.run(["docker", "load", "-q", "-i", args.archive], capture_output=True,
                         text=True, check=False)
    if out.returncode != 0:
        raise SystemExit(f"docker load {args.archive} failed: {out.stderr.strip()}")
    with closing(client()) as c:
        image = c.images.get(out.stdout.strip().rsplit(" ", 1)[-1])
    done({"seconds": round(time.monotonic() - t0, 1), "id": image.id, "tags": image.tags})


def step_services(args: argparse.Namespace) -> None:
    """overlay1, `vote-vip` (published, VIP) with both tasks on the serving node, and the
    VIP client on the entry node; waits until every task runs."""
    t0 = time.monotonic()
    with closing(client()) as c:
        # By name: each node imported its own copy, so the IDs differ. The pull each node
        # tries first fails at once (the daemon's proxy is a closed local port).
        bb = IMAGE
        c.networks.create(NETWORK, driver="overlay", attachable=True, scope="swarm")
        c.services.create(bb, ["sh", "-c", VOTE_SH], name="vote-vip", networks=[NETWORK],
                          mode=ServiceMode("replicated", replicas=2),
                          endpoint_spec=EndpointSpec(mode="vip", ports={PUBLISHED_PORT: 80}),
                          stop_grace_period=GRACE_NS,
                          constraints=[f"node.hostname=={args.serve}"])
        c.services.create(bb, ["sh", "-c", CLIENT_SH], name="client", networks=[NETWORK],
                          stop_grace_period=GRACE_NS,
                          constraints=[f"node.hostname=={args.entry}"])

        def running() -> bool:
            tasks = c.api.tasks(filters={"desired-state": "running"})
            return sum(t["Status"]["State"] == "running" for t in tasks) == 3
        wait(running, "the test services' 3 tasks to run", TASKS_TIMEOUT_S)
    done({"seconds": round(time.monotonic() - t0, 1)})


def _tasks(c: docker.DockerClient) -> dict[str, list[str]]:
    """container id[:12] -> [task name, node hostname], from the manager (every node)."""
    nodes = {n.id: n.attrs["Description"]["Hostname"] for n in c.nodes.list()}
    services = {s.id: s.name for s in c.services.list()}
    out = {}
    for t in c.api.tasks(filters={"desired-state": "running"}):
        ct = (t["Status"].get("ContainerStatus") or {}).get("ContainerID")
        if ct and t["ServiceID"] in services:
            out[ct[:12]] = [f"{services[t['ServiceID']]}.{t.get('Slot', t['NodeID'])}.{t['ID']}",
                            nodes.get(t["NodeID"], "?")]
    return out


def step_agents(args: argparse.Namespace) -> None:
    """Wait until every node runs an agent task that is listening (its log says so)."""
    with closing(client()) as c:
        def listening() -> bool:
            svc = c.services.list(filters={"name": "swarmtrace-agent"})
            if not svc:
                return False
            logs = b"".join(svc[0].logs(stderr=True, stdout=True)).decode(errors="replace")
            return logs.count("listening on") >= args.count
        secs = wait(listening, f"{args.count} deployed agents to listen", TASKS_TIMEOUT_S)
        svc = c.services.list(filters={"name": "swarmtrace-agent"})[0]
        logs = b"".join(svc.logs(stderr=True, stdout=True)).decode(errors="replace")
        done({"seconds": round(secs, 1), "image": svc.attrs["Spec"]["TaskTemplate"][
            "ContainerSpec"]["Image"], "log": [x for x in logs.splitlines() if "listening" in x]})


def step_trace_start(args: argparse.Namespace) -> None:
    """`swarmtrace trace --swarm --json` in the background (it outlives this step); returns
    once it is tracing and every node's agent is connected."""
    WORK.mkdir(parents=True, exist_ok=True)
    out, err = WORK / f"{args.name}.json", WORK / f"{args.name}.err"
    count = ["--count", str(args.count)] if args.count else []
    with out.open("wb") as o, err.open("wb") as e:
        # The agents filter (deploy gave them --port): a collector takes no filter.
        proc = subprocess.Popen([sys.executable, "-m", "tracer", "trace", "--swarm", "--json",
                                 *count],
                                stdout=o, stderr=e, stdin=subprocess.DEVNULL,
                                start_new_session=True)
    (WORK / f"{args.name}.pid").write_text(str(proc.pid))

    def ready() -> bool:
        text = err.read_text(errors="replace")
        if proc.poll() is not None:
            raise SystemExit(f"trace exited ({proc.returncode}): {text[-1500:]}")
        return READY in text and all(f"{n}: agent connected" in text for n in args.nodes)
    secs = wait(ready, f"trace --swarm with agents {', '.join(args.nodes)} connected", 120)
    done({"seconds": round(secs, 1)})


def step_wait_note(args: argparse.Namespace) -> None:
    """Wait for a line in the background trace's stderr, counted from the start."""
    err = WORK / f"{args.name}.err"

    def seen() -> bool:
        return err.read_text(errors="replace").count(args.text) >= args.times
    secs = wait(seen, f"{args.text!r} from trace --swarm", args.timeout)
    done({"seconds": round(secs, 1)})


def _ipvs() -> dict[str, str]:
    """client ip:port -> real server ip:port, from IPVS itself in every sandbox here."""
    found: dict[str, str] = {}
    for ns in NETNS_DIR.iterdir():
        res = subprocess.run(["nsenter", f"--net={ns}", "ipvsadm", "-lnc"],
                             capture_output=True, text=True, check=False)
        for line in res.stdout.splitlines():
            if m := IPVS_CONN.match(line):
                found[m.group(1)] = m.group(3)
    return found


def step_traffic(args: argparse.Namespace) -> None:
    """Requests entering this node: mesh to its link address, VIP from the client task."""
    answers = []
    with closing(client()) as c:
        container = c.containers.list(filters={"label": "com.docker.swarm.service.name=client"})
        for mode in args.modes.split(","):
            for _ in range(args.count):
                a = (request_from_host(args.addr, PUBLISHED_PORT) if mode == "mesh"
                     else request_from_client(container[0], "vote-vip"))
                answers.append({"mode": mode, "client": a.client, "backend": a.container,
                                "ok": a.ok, "text": a.text[:200]})
        done({"answers": answers, "ipvs": _ipvs(), "tasks": _tasks(c),
              "vni": c.networks.get(NETWORK).attrs["Options"][
                  "com.docker.network.driver.overlay.vxlanid_list"]})


def step_trace_stop(args: argparse.Namespace) -> None:
    """The background trace's requests and notes: it ends by itself at --count, or on
    SIGINT once nothing new came for a moment (the last replies arrived)."""
    out, err = WORK / f"{args.name}.json", WORK / f"{args.name}.err"
    pid = int((WORK / f"{args.name}.pid").read_text())

    def lines() -> list[str]:
        return [x for x in out.read_text(errors="replace").splitlines() if x.strip()]

    def gone() -> bool:
        return not Path(f"/proc/{pid}").exists() or \
            Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] == "Z"
    with suppress(SystemExit):
        wait(lambda: gone() or len(lines()) >= args.want, "the requests", 60)
    if not gone():
        settle = len(lines())
        time.sleep(slowdown.scaled(2))
        if len(lines()) != settle:
            time.sleep(slowdown.scaled(4))
        os.kill(pid, signal.SIGINT)
        wait(gone, "trace --swarm to stop on SIGINT", 60)
    done({"requests": [json.loads(x) for x in lines()],
          "notes": err.read_text(errors="replace").splitlines()})


def step_kill_agent(args: argparse.Namespace) -> None:
    """Kill this node's agent container (Swarm then starts a new task)."""
    with closing(client()) as c:
        found = c.containers.list(filters={"label": "io.swarmtrace.deploy"})
        for ct in found:
            ct.kill()
        done({"killed": [ct.name for ct in found]})


def step_state(args: argparse.Namespace) -> None:
    """What a deployment could leave on this node."""
    with closing(client()) as c:
        manager = bool((c.info().get("Swarm") or {}).get("ControlAvailable"))
        state = {
            "services": sorted(s.name for s in c.services.list()) if manager else None,
            "secrets": sorted(s.name for s in c.secrets.list()) if manager else None,
            "containers": sorted(ct.name for ct in c.containers.list(all=True)),
        }
    links = subprocess.run(["bpftool", "-j", "link", "show"], capture_output=True, text=True,
                           check=True).stdout
    progs = subprocess.run(["bpftool", "-j", "prog", "show"], capture_output=True, text=True,
                           check=True).stdout
    state["bpf_links"] = sorted(f"{x.get('type')}:{x.get('prog_id')}"
                                for x in json.loads(links or "[]"))
    # By type and name: IDs change, and the containers' device programs have no name.
    state["bpf_progs"] = sorted(f"{x.get('type')}:{x.get('name', '')}"
                                for x in json.loads(progs or "[]"))
    done(state)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="step", required=True)
    p = sub.add_parser("link")
    p.add_argument("hostname")
    p.add_argument("addr", help="ADDR/PREFIX")
    p.add_argument("mac")
    p.set_defaults(func=step_link)
    p = sub.add_parser("ping")
    p.add_argument("addr")
    p.set_defaults(func=step_ping)
    sub.add_parser("dockerd").set_defaults(func=step_dockerd)
    p = sub.add_parser("init")
    p.add_argument("addr")
    p.set_defaults(func=step_init)
    p = sub.add_parser("join")
    p.add_argument("manager")
    p.add_argument("token")
    p.add_argument("addr")
    p.set_defaults(func=step_join)
    for name, func in (("nodes", step_nodes), ("agents", step_agents)):
        p = sub.add_parser(name)
        p.add_argument("count", type=int)
        p.set_defaults(func=func)
    p = sub.add_parser("load")
    p.add_argument("archive")
    p.set_defaults(func=step_load)
    p = sub.add_parser("services")
    p.add_argument("entry", help="hostname of the node requests enter (client task)")
    p.add_argument("serve", help="hostname of the node that serves them (vote-vip tasks)")
    p.set_defaults(func=step_services)
    p = sub.add_parser("trace-start")
    p.add_argument("name")
    p.add_argument("--count", type=int, default=0)
    p.add_argument("--nodes", nargs="+", required=True)
    p.set_defaults(func=step_trace_start)
    p = sub.add_parser("wait-note")
    p.add_argument("name")
    p.add_argument("text")
    p.add_argument("--times", type=int, default=1)
    p.add_argument("--timeout", type=float, default=60)
    p.set_defaults(func=step_wait_note)
    p = sub.add_parser("traffic")
    p.add_argument("addr", help="this node's link address (mesh requests go to it)")
    p.add_argument("--modes", default="mesh,vip")
    p.add_argument("--count", type=int, default=4, help="requests per mode")
    p.set_defaults(func=step_traffic)
    p = sub.add_parser("trace-stop")
    p.add_argument("name")
    p.add_argument("--want", type=int, default=0, help="requests expected")
    p.set_defaults(func=step_trace_stop)
    sub.add_parser("kill-agent").set_defaults(func=step_kill_agent)
    sub.add_parser("state").set_defaults(func=step_state)
    args = ap.parse_args()
    args.func(args)


if __name__ == "__main__":
    main()
