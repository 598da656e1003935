"""A private two-netns topology for long soak runs: a client and a server behind a DNAT.

The netns lab has fixed names that other work needs; an hour-long run builds this instead,
named after its tag, so it needs no lab lock and the lab can come and go meanwhile.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tracer.lab.http_client import TIMEOUT_S

SERVER_PORT = 80
# Not the lab's 8080: live tests of the lab filter on that port and count what they see.
PUBLISHED_PORT = 18080
REPO = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Pair:
    """A client netns and a server netns on one veth; the server DNATs VIP:PUBLISHED_PORT to
    itself."""

    client: str
    server: str
    client_addr: str
    server_addr: str
    vip: str

    @property
    def target(self) -> str:
        return f"{self.vip}:{PUBLISHED_PORT}"

    def flood(self, seconds: float, rate: float, conns: int = 2) -> tuple[int, int]:
        """(completed, failed) requests, paced to `rate` per second for `seconds`."""
        argv = ["ip", "netns", "exec", self.client, sys.executable, "-m",
                "tracer.lab.http_client", "flood", "--target", self.target,
                "--seconds", str(seconds), "--conns", str(conns), "--rate", str(rate)]
        out = subprocess.run(argv, capture_output=True, text=True, check=True, cwd=REPO,
                             timeout=seconds + TIMEOUT_S + 30).stdout
        result = json.loads(out)
        return int(result["completed"]), int(result["errors"])


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


def _in(netns: str, *argv: str) -> None:
    subprocess.run(["ip", "netns", "exec", netns, *argv], check=True, capture_output=True)


@contextmanager
def pair(tag: str, subnet: int) -> Iterator[Pair]:
    """Netns `swt-<tag>-cli` and `swt-<tag>-srv` on 10.231.<subnet>.0/24 (VIP
    10.232.<subnet>.9), with an HTTP server answering "Processed by container ID <tag>-srv";
    all removed on the way out."""
    net = f"10.231.{subnet}"
    # The VIP is off the link: the client must route it to the server, not ARP for it.
    p = Pair(f"swt-{tag}-cli", f"swt-{tag}-srv", f"{net}.2", f"{net}.1", f"10.232.{subnet}.9")
    server: subprocess.Popen[bytes] | None = None
    run_dir = Path(tempfile.mkdtemp(prefix=f"swt-{tag}-"))
    try:
        for ns in (p.client, p.server):
            _ip("netns", "add", ns)
            _in(ns, "ip", "link", "set", "lo", "up")
        _ip("-n", p.client, "link", "add", "eth0", "type", "veth", "peer", "name", "eth0",
            "netns", p.server)
        for ns, addr in ((p.client, p.client_addr), (p.server, p.server_addr)):
            _ip("-n", ns, "addr", "add", f"{addr}/24", "dev", "eth0")
            _ip("-n", ns, "link", "set", "eth0", "up")
        _ip("-n", p.client, "route", "add", "default", "via", p.server_addr)
        _in(p.server, "iptables", "-t", "nat", "-A", "PREROUTING", "-p", "tcp", "-d", p.vip,
            "--dport", str(PUBLISHED_PORT), "-j", "DNAT",
            "--to-destination", f"{p.server_addr}:{SERVER_PORT}")
        pidfile = run_dir / "server.pid"
        server = subprocess.Popen(
            ["ip", "netns", "exec", p.server, sys.executable, "-m", "tracer.lab.http_backend",
             "--name", f"{tag}-srv", "--port", str(SERVER_PORT), "--pidfile", str(pidfile)],
            cwd=REPO, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while not pidfile.exists():
            if server.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"the soak server in {p.server} did not listen within "
                                     f"60 s (exit {server.poll()})")
            time.sleep(0.05)
        yield p
    finally:
        if server is not None:
            server.terminate()
            try:
                server.wait(10)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
        for ns in (p.client, p.server):
            subprocess.run(["ip", "netns", "del", ns], check=False, capture_output=True)
        for f in run_dir.iterdir():
            f.unlink()
        run_dir.rmdir()
