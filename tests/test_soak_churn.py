"""Issue 13, churn: 1,000 network namespaces created and destroyed while `trace` runs
(`scripts/test --soak -s tests/test_soak_churn.py`; no lab lock: the netns are named
swt-churn-N and nothing else is touched).

The kernel hands a new netns the inode number of one just freed, so a tracer that keys its
hooks and names by inode alone can miss a netns or name it after a dead one. Each netns sends
refused connections to 127.0.0.1 from its own client port until a request of it is traced:
that request's time, minus the time the netns file appeared, is how long attaching took; its
hops must carry the netns's own name. Afterwards the tracer must hold what it held before: no
links into removed netns (a link keeps its netns alive), no netns files, no more fds."""

from __future__ import annotations

import contextlib
import os
import socket
import statistics
import subprocess
import time
from pathlib import Path

import pytest
from live_trace import Running, start_trace
from proc_sample import Sample, sample

from tracer import slowdown
from tracer.probes.core import MAX_WAIT_S, NETNS_RESCAN_S, PROC_RESCAN_S
from tracer.probes.netns import entered

pytestmark = [
    pytest.mark.root,
    pytest.mark.soak,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root: BPF and netns"),
    pytest.mark.skipif(not Path("/sys/kernel/btf/vmlinux").exists(), reason="kernel has no BTF"),
]

TOTAL = 1000
WAVE = 25  # created together; the previous wave is removed once this one is attached
PORT = 18231  # nothing listens: each connection is refused, which is a traced request
CLIENT_PORT0 = 20000  # netns i sends from 127.0.0.1:(CLIENT_PORT0 + i)
# Stated: a netns file is hooked at the next rescan, NETNS_RESCAN_S after the last, which the
# poll loop reaches within MAX_WAIT_S. Allowed on top: the rescan itself; all of it stretched
# by the machine's load (runnable work per CPU, at least 1).
ATTACH_LIMIT_S = NETNS_RESCAN_S + MAX_WAIT_S + 1.0
LINKS_PER_NETNS = 3


def _name(i: int) -> str:
    return f"swt-churn-{i}"


def _create(i: int) -> int:
    """Make netns i with lo up; the monotonic ns at which its file existed."""
    subprocess.run(["ip", "netns", "add", _name(i)], check=True, capture_output=True)
    t = time.monotonic_ns()
    subprocess.run(["ip", "-n", _name(i), "link", "set", "lo", "up"], check=True,
                   capture_output=True)
    return t


def _remove(i: int) -> None:
    subprocess.run(["ip", "netns", "del", _name(i)], check=False, capture_output=True)


def _refused(i: int) -> None:
    """One connection from inside netns i, refused by its own loopback."""
    with entered(Path("/var/run/netns", _name(i))), socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", CLIENT_PORT0 + i))
        with contextlib.suppress(ConnectionRefusedError):
            s.connect(("127.0.0.1", PORT))


class Seen:
    """Requests of the churn netns read from the tracer's output: first time per netns, and
    hops named after another netns."""

    def __init__(self, tracer: Running) -> None:
        self.tracer = tracer
        self.read = 0
        self.first_ns: dict[int, int] = {}
        self.wrong: list[str] = []
        self.requests = 0

    def update(self) -> None:
        reqs = self.tracer.requests()
        for r in reqs[self.read:]:
            port = int(r["client"].rsplit(":", 1)[1])
            i = port - CLIENT_PORT0
            if not 0 <= i <= TOTAL:
                continue
            self.requests += 1
            self.first_ns.setdefault(i, r["start_ns"])
            names = {h.get("netns") for h in r["hops"]} | {r["client_name"]}
            if names - {_name(i), None}:
                self.wrong.append(f"{_name(i)}: {sorted(map(str, names))}")
        self.read = len(reqs)


def _attach(wave: range, created: dict[int, int], seen: Seen) -> None:
    """Send from every netns of the wave until each was traced."""
    deadline = time.monotonic() + 10 * ATTACH_LIMIT_S
    while True:
        seen.update()
        waiting = [i for i in wave if i not in seen.first_ns]
        if not waiting:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"{len(waiting)} netns never traced, e.g. {_name(waiting[0])}"
                                 f" ({len(seen.wrong)} wrong names: {seen.wrong[:3]})")
        for i in waiting:
            _refused(i)
        time.sleep(0.02)


def _settled(tracer: Running, base: Sample, timeout: float) -> Sample:
    """The tracer's sample once its links are back to its netns (+ what it held beyond)."""
    deadline = time.monotonic() + timeout
    while True:
        s = sample(tracer.proc.pid, 0.0)
        if s.links - LINKS_PER_NETNS * s.netns <= base.links - LINKS_PER_NETNS * base.netns:
            return s
        if time.monotonic() > deadline:
            return s
        time.sleep(0.2)


def test_netns_churn() -> None:
    for i in range(TOTAL + 1):  # a previous run that was killed
        if Path("/var/run/netns", _name(i)).exists():
            _remove(i)
    tracer = Running(start_trace("--json", "--port", str(PORT), "--timeout", "1800", links=0))
    created: dict[int, int] = {}
    alive: list[range] = []
    seen = Seen(tracer)
    try:
        base = sample(tracer.proc.pid, 0.0)
        t0 = time.monotonic()
        for start in range(0, TOTAL, WAVE):
            wave = range(start, min(start + WAVE, TOTAL))
            for i in wave:
                created[i] = _create(i)
            _attach(wave, created, seen)
            alive.append(wave)
            if len(alive) > 1:  # the previous wave goes while this one is traced
                for i in alive.pop(0):
                    _remove(i)
        churn_s = time.monotonic() - t0
        for wave in alive:
            for i in wave:
                _remove(i)
        alive.clear()
        end = _settled(tracer, base, PROC_RESCAN_S + 2 * NETNS_RESCAN_S + 10)
        # Still tracing, with names, after it all (a netns of its own: a refused connection
        # leaves a request open for a while, which the same client tuple would join).
        created[TOTAL] = _create(TOTAL)
        alive.append(range(TOTAL, TOTAL + 1))
        _attach(range(TOTAL, TOTAL + 1), created, seen)
    finally:
        for wave in alive:
            for i in wave:
                _remove(i)
        tracer.stop()
    # A loaded machine (other work, a swarm lab starting) stretches every step of it.
    load = slowdown.host_load()
    limit = ATTACH_LIMIT_S * load
    lat = sorted((seen.first_ns[i] - created[i]) / 1e9 for i in range(TOTAL + 1))
    p50, p99 = statistics.median(lat), lat[int(0.99 * (len(lat) - 1))]
    print(f"soak: churn: {TOTAL} netns in {churn_s:.0f} s ({WAVE} at a time), "
          f"{seen.requests} requests; attached after p50 {p50:.2f} s, p99 {p99:.2f} s, "
          f"max {lat[-1]:.2f} s (limit {limit:.1f} s at load x{load:.1f}); wrong names "
          f"{len(seen.wrong)}; links {base.links}->{end.links} for netns {base.netns}->"
          f"{end.netns}, maps {base.maps}->{end.maps}, progs {base.progs}->{end.progs}, fds "
          f"{base.fds}->{end.fds}, netns files open {base.netns_fds}->{end.netns_fds}, RSS "
          f"{base.rss_kib}->{end.rss_kib} KiB; tracer exit {tracer.proc.returncode}")
    assert not seen.wrong, seen.wrong[:5]
    assert lat[-1] <= limit, f"slowest attach {lat[-1]:.2f} s (load x{load:.1f})"
    assert end.links - LINKS_PER_NETNS * end.netns <= base.links - LINKS_PER_NETNS * base.netns
    assert (end.maps, end.progs) == (base.maps, base.progs)
    plain = end.fds - end.links - end.maps - end.progs
    assert plain <= base.fds - base.links - base.maps - base.progs + 2, (base, end)
    # What keeps a removed netns alive: a link into it (above) or an open netns file.
    assert end.netns_fds == base.netns_fds == 0
    assert tracer.proc.returncode == 0, tracer.err[-3:]
