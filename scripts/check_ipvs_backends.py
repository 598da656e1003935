#!/usr/bin/env python3
"""Inside the stock-kernel VM: trace real IPVS with both probe backends at once, on the same
requests, and record what IPVS itself and the answering backends say about each request.

--lab netns: the netns lab with a real IPVS fwmark service (mesh) and VIP service.
--lab swarm: a real 2-node swarm; Docker's own routing mesh (published port) and VIP.
--image ARCHIVE (swarm only): `docker load` the swarmtrace image into node1's dockerd and run
the tracers in it with the README's least-privilege flags instead of from this venv; then run
it once without each of those capabilities and mounts, to record what each is for.

Prints one JSON object (used by tests/test_ipvs_vm.py and tests/test_swarm_vm.py):
  lab, lb            which lab, and its balancer ("ipvs")
  answers            [{mode, client, backend}] in the order sent; client is "" when the
                     request was sent from inside a container (swarm VIP)
  ipvs               {client ip:port as IPVS saw it: real server ip:port} from `ipvsadm -lnc`
  tasks              {container id[:12]: [task name, node]} from `docker inspect` (swarm)
  traced             {backend: {notes, requests}}: each tracer's stderr and JSON requests
  image              (--image) {tag, archive_mb, load_s, argv: the bcc tracer's command,
                     without: {what was left out: {rc, stderr, seconds}}}
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tracer import lab, slowdown
from tracer.container_run import BCC_PATHS, CAPABILITIES, docker_run_flags
from tracer.lab import swarm

READY = "swarmtrace: tracing with"
BACKENDS = ("bcc", "core")
MODES = ("mesh", "vip")
# netns lab: the backends and the VIP live at 10.0.0.9 and :8080; swarm: tasks serve :80
# behind the published :8080.
TRACE_FILTER = {"netns": ["--port", "8080", "--addr", "10.0.0.9"],
                "swarm": ["--port", "8080", "--port", "80"]}
CONN = re.compile(r"\s*TCP\s+\S+\s+\S+\s+(\S+)\s+(\S+)\s+(\S+)")


def ipvs_connections(netns_file: str) -> dict[str, str]:
    """client ip:port -> real server ip:port from `ipvsadm -lnc` in a netns (file or name)."""
    enter = (["ip", "netns", "exec", netns_file] if "/" not in netns_file
             else ["nsenter", f"--net={netns_file}"])
    out = subprocess.run([*enter, "ipvsadm", "-lnc"], capture_output=True, text=True,
                         check=False).stdout
    return {m.group(1): m.group(3) for line in out.splitlines() if (m := CONN.match(line))}


ATTACH_TIMEOUT_S = 300.0  # bcc compiles its program: 15-25 s under emulation, idle
SETTLE_TIMEOUT_S = 30.0  # for the replies of the last requests to reach the tracers
QUIET_S = 1.0  # no new request for this long: the tracer has shown what it saw


DOCKER = "/usr/bin/docker"  # another docker CLI may come first on PATH
LOAD_TIMEOUT_S = 300.0  # `docker load` of the 430 MB full image: about a minute emulated


def trace_args(backend: str, flt: list[str], record: Path | None) -> list[str]:
    write = ["-w", str(record)] if record else []
    return ["trace", "--backend", backend, "--json", "--timeout", "900", *write, *flt]


def container_name(backend: str) -> str:
    return f"swarmtrace-check-{backend}"


@dataclass(frozen=True)
class Image:
    """The swarmtrace image, loaded into a node's dockerd, run as the README's Install says."""

    tag: str
    node: swarm.LabNode

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "DOCKER_HOST": self.node.socket}

    @classmethod
    def load(cls, archive: Path, node: swarm.LabNode) -> tuple[Image, float]:
        """`docker load -i archive` into node's dockerd; the image and the seconds it took."""
        t0 = time.monotonic()
        limit = slowdown.scaled(LOAD_TIMEOUT_S)
        try:
            res = subprocess.run([DOCKER, "load", "-i", str(archive)], capture_output=True,
                                 text=True, check=False, timeout=limit,
                                 env={**os.environ, "DOCKER_HOST": node.socket})
        except subprocess.TimeoutExpired:
            raise SystemExit(f"docker load -i {archive} took over {limit:.0f} s"
                             f"{slowdown.note()}") from None
        tag = re.search(r"^Loaded image: (\S+)$", res.stdout, re.M)
        if res.returncode != 0 or tag is None:
            raise SystemExit(f"docker load -i {archive} failed: {res.stderr.strip()}")
        return cls(tag.group(1), node), time.monotonic() - t0

    def argv(self, name: str, args: list[str], caps: tuple[str, ...] = CAPABILITIES,
             mounts: tuple[str, ...] = BCC_PATHS) -> list[str]:
        """`docker run` of swarmtrace `args` as container `name`, the README's way on this
        node, with `caps` and the read-only `mounts`."""
        return [DOCKER, "run", "--rm", "--name", name,
                *docker_run_flags(self.node.socket, str(self.node.exec_root / "netns"), caps,
                                  mounts), self.tag, *args]

    def remove(self, name: str) -> None:
        subprocess.run([DOCKER, "rm", "-f", name], capture_output=True, check=False,
                       env=self.env)


class Tracer:
    """One `swarmtrace trace --json` run, from this venv or in `image`; stderr kept as notes,
    stdout as requests."""

    def __init__(self, backend: str, argv: list[str], image: Image | None = None) -> None:
        self.backend = backend
        self.image = image  # argv is a `docker run` of it, container container_name(backend)
        self.container = container_name(backend)
        self.argv = argv
        self.notes: list[str] = []
        self.lines: list[str] = []
        self.last_line = time.monotonic()
        self.attached = False  # it printed READY: every probe is in place
        self.ready = threading.Event()  # attached, or exited
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True, env=image.env if image else None)
        self._readers = [threading.Thread(target=f, daemon=True)
                         for f in (self._read_stderr, self._read_stdout)]
        for t in self._readers:
            t.start()

    def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.notes.append(line.rstrip())
            if line.startswith(READY):
                self.attached = True
                self.ready.set()
        with suppress(subprocess.TimeoutExpired):  # stderr closed: it is exiting
            self.proc.wait(timeout=5)
        self.ready.set()  # exited: do not wait for it any longer

    def _read_stdout(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)
            self.last_line = time.monotonic()

    def wait_attached(self, deadline: float, limit: float) -> None:
        """Return once every probe is attached; SystemExit saying what was slow otherwise."""
        self.ready.wait(max(deadline - time.monotonic(), 0))
        if self.attached and self.proc.poll() is None:
            return
        what = ("exited before it was ready" if self.proc.poll() is not None
                else f"was not ready within {limit:.0f} s{slowdown.note()}")
        raise SystemExit(f"the {self.backend} tracer {what}: {' | '.join(self.notes[-3:])}")

    def interrupt(self) -> None:
        """Ctrl-C: the tracer prints what it has and exits."""
        if self.image is None:
            self.proc.send_signal(signal.SIGINT)
        else:
            subprocess.run([DOCKER, "kill", "--signal", "INT", self.container],
                           capture_output=True, check=False, env=self.image.env)

    def kill(self) -> None:
        """Gone at once, with its BPF links; a container too, not just the docker client."""
        if self.image is not None:
            self.image.remove(self.container)
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()

    def stop(self) -> dict[str, Any]:
        self.interrupt()
        try:
            self.proc.wait(timeout=slowdown.scaled(60))
        except subprocess.TimeoutExpired:
            self.kill()
        for t in self._readers:
            t.join(5)
        return {"notes": self.notes, "requests": [json.loads(x) for x in self.lines]}


@contextmanager
def tracing(backends: list[str], lab_name: str, record: Path | None,
            image: Image | None = None) -> Iterator[dict[str, Tracer]]:
    """Tracers for `backends` (in `image` if given), all attached by the time the body runs;
    each records its events to record/<lab>_<backend>.swt if asked to. The body ends them
    with stop_all(); any still running on the way out (an error) are killed, their BPF links
    with them."""
    def argv(backend: str) -> list[str]:
        args = trace_args(backend, TRACE_FILTER[lab_name],
                          record / f"{lab_name}_{backend}.swt" if record else None)
        return (image.argv(container_name(backend), args) if image
                else [sys.executable, "-m", "tracer", *args])

    tracers = {b: Tracer(b, argv(b), image) for b in backends}
    try:
        limit = slowdown.scaled(ATTACH_TIMEOUT_S)
        deadline = time.monotonic() + limit
        for t in tracers.values():
            # Traffic sent before a tracer is attached would be missed: "traced 0 requests"
            # would be a false result, so a slow attach ends the run saying so.
            t.wait_attached(deadline, limit)
        yield tracers
    finally:
        for t in tracers.values():
            if t.proc.poll() is None:
                t.kill()


def stop_all(tracers: dict[str, Tracer], sent: int) -> dict[str, Any]:
    """Stop the tracers once each has shown `sent` requests and then nothing new for a
    moment (the last replies arrived), or after a scaled timeout (the check shows what is
    missing)."""
    deadline = time.monotonic() + slowdown.scaled(SETTLE_TIMEOUT_S)
    quiet = slowdown.scaled(QUIET_S)
    while time.monotonic() < deadline:
        now = time.monotonic()
        if all(len(t.lines) >= sent and now - t.last_line >= quiet for t in tracers.values()):
            break
        time.sleep(0.1)
    return {b: t.stop() for b, t in tracers.items()}


def netns_lab(count: int, backends: list[str], record: Path | None) -> dict[str, Any]:
    info = lab.up()
    try:
        with tracing(backends, "netns", record) as tracers:
            answers = [{"mode": mode, "client": a.client, "backend": a.backend}
                       for mode in MODES for a in lab.traffic(mode, count)]  # type: ignore[arg-type]
            ipvs = {**ipvs_connections("stlab-ingress_sbox"),
                    **ipvs_connections("stlab-vip-client")}
            return {"lab": "netns", "lb": info.lb, "answers": answers, "ipvs": ipvs,
                    "tasks": {}, "traced": stop_all(tracers, len(answers))}
    finally:
        lab.down()


def _docker_netns(node: swarm.LabNode) -> list[str]:
    """Every netns file of a node's dockerd (sandboxes, ingress_sbox, lb_<net>)."""
    pid = int(node.pidfile.read_text())
    return [str(p) for p in Path(f"/proc/{pid}/root{node.exec_root}/netns").iterdir()]


def without_each(image: Image, backend: str) -> dict[str, dict[str, Any]]:
    """The image's tracer run once without each capability and mount it is given: exit code
    and stderr of each (a run that can trace prints the ready line and exits 0)."""
    runs: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
        f"--cap-add {c}": (tuple(x for x in CAPABILITIES if x != c), BCC_PATHS)
        for c in CAPABILITIES}
    runs |= {f"-v {m}": (CAPABILITIES, tuple(x for x in BCC_PATHS if x != m))
             for m in BCC_PATHS}
    found: dict[str, dict[str, Any]] = {}
    limit = slowdown.scaled(ATTACH_TIMEOUT_S)
    for what, (caps, mounts) in runs.items():
        name = f"swarmtrace-check-without-{len(found)}"
        argv = image.argv(name, ["trace", "--backend", backend, "--timeout", "1"], caps, mounts)
        t0 = time.monotonic()
        try:
            res = subprocess.run(argv, capture_output=True, text=True, check=False,
                                 timeout=limit, env=image.env)
        except subprocess.TimeoutExpired:
            raise SystemExit(f"the image without {what} neither traced nor failed within "
                             f"{limit:.0f} s{slowdown.note()}") from None
        finally:
            image.remove(name)
        found[what] = {"rc": res.returncode, "stderr": res.stderr.splitlines(),
                       "seconds": round(time.monotonic() - t0, 1)}
        print(f"without {what}: exit {res.returncode} in {found[what]['seconds']} s: "
              f"{' | '.join(found[what]['stderr'][-2:])}", file=sys.stderr)
    return found


def swarm_lab(count: int, backends: list[str], record: Path | None,
              archive: Path | None = None) -> dict[str, Any]:
    up = swarm.up(nodes=2, progress=lambda s: print(s, file=sys.stderr))
    try:
        if not up.ipvs:
            raise SystemExit("this kernel has no IPVS: the swarm lab has no VIP or routing mesh")
        image: Image | None = None
        about_image: dict[str, Any] = {}
        if archive is not None:
            image, load_s = Image.load(archive, up.nodes[0])
            print(f"loaded {image.tag} in {load_s:.0f} s", file=sys.stderr)
            about_image = {"tag": image.tag, "archive_mb": round(archive.stat().st_size / 1e6),
                           "load_s": round(load_s, 1),
                           # First: each fails fast, and says so even if tracing fails.
                           "without": without_each(image, backends[0])}
        with tracing(backends, "swarm", record, image) as tracers:
            answers = [{"mode": mode, "client": a.client, "backend": a.container}
                       for mode in MODES for a in swarm.traffic(mode, count)]
            ipvs: dict[str, str] = {}
            for node in up.nodes:
                for ns in _docker_netns(node):
                    ipvs |= ipvs_connections(ns)
            with up.open_clients() as clients:
                tasks = {ct.id[:12]: [ct.labels.get("com.docker.swarm.task.name", ct.name), name]
                         for name, c in clients.items() for ct in c.containers.list()}
            result: dict[str, Any] = {
                "lab": "swarm", "lb": "ipvs", "answers": answers, "ipvs": ipvs, "tasks": tasks,
                "traced": stop_all(tracers, len(answers))}
            argv = tracers[backends[0]].argv
        if image is not None:
            result["image"] = {**about_image, "argv": argv}
        return result
    finally:
        swarm.down()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--lab", choices=("netns", "swarm"), default="netns")
    ap.add_argument("--count", type=int, default=4, help="requests per mode")
    ap.add_argument("--backends", default=",".join(BACKENDS), help="comma separated")
    ap.add_argument("--record", type=Path, metavar="DIR",
                    help="also write each tracer's events and this JSON to DIR")
    ap.add_argument("--image", type=Path, metavar="ARCHIVE",
                    help="run the tracers in this swarmtrace image (scripts/image's archive)")
    args = ap.parse_args()
    backends = args.backends.split(",")
    if args.image and (args.lab != "swarm" or args.record):
        ap.error("--image runs in the swarm lab's node1, without --record")
    result = json.dumps(netns_lab(args.count, backends, args.record) if args.lab == "netns"
                        else swarm_lab(args.count, backends, args.record, args.image))
    if args.record:
        (args.record / f"{args.lab}.json").write_text(result + "\n")
    print(result)


if __name__ == "__main__":
    main()
