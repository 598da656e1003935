"""`swarmtrace trace` as a subprocess on the real kernel, and the BPF links it holds."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import IO, Any

SWARMTRACE = [sys.executable, "-m", "tracer"]
LAB_LINKS = 8 * 3  # netfilter links when every netns of the netns lab is hooked


def start_trace(*args: str, timeout: float = 30, links: int = LAB_LINKS
                ) -> subprocess.Popen[str]:
    """`swarmtrace trace ARGS`, returned once every lab netns is hooked (`links` in all,
    counting those of tracers already running)."""
    proc = subprocess.Popen([*SWARMTRACE, "trace", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    # Ready when it says so (its "tracing with" line comes once its probes are attached) and
    # every lab netns is hooked. Links alone are not enough: a tracer that has just exited
    # can still be listed for a moment, and a signal sent while this one is still starting
    # Python kills it before its handlers exist.
    deadline = time.monotonic() + timeout
    said = b""  # read from the fd itself: a buffered readline would hide the rest from select
    assert proc.stderr is not None
    fd = proc.stderr.fileno()
    while time.monotonic() < deadline:
        while b"tracing with" not in said and select.select([fd], [], [], 0)[0]:
            chunk = os.read(fd, 4096)
            if not chunk:
                break
            said += chunk
        if b"tracing with" in said and our_links() >= links:
            return proc
        if proc.poll() is not None:
            rest = proc.stderr.read()
            raise AssertionError(f"trace exited early: {said.decode(errors='replace')}{rest}")
        time.sleep(0.2)
    proc.kill()
    raise AssertionError(f"trace did not attach within {timeout:.0f} s")


def stopped(proc: subprocess.Popen[str], timeout: float = 60,
            sig: int | None = signal.SIGINT) -> tuple[str, str]:
    """Send `sig` (None: it ends by itself, --count or --timeout), then its output once it
    exits. One still running `timeout` s later is killed, and the test fails saying so: a
    tracer left running would hold its BPF links through every later test."""
    if sig is not None and proc.poll() is None:
        proc.send_signal(sig)
    try:
        return proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
        what = "its end" if sig is None else signal.Signals(sig).name
        raise AssertionError(f"{' '.join(map(str, proc.args))} still ran {timeout:.0f} s after "
                             f"{what}; killed: {err[-2000:]}") from None


def our_links() -> int:
    """BPF links of swarmtrace's programs (named st_*), whoever holds them."""
    out = subprocess.run(["bpftool", "link", "list", "--json"], capture_output=True, text=True,
                         check=True).stdout
    progs = {p["id"]: p.get("name", "") for p in json.loads(
        subprocess.run(["bpftool", "prog", "show", "--json"], capture_output=True, text=True,
                       check=True).stdout)}
    return sum(1 for link in json.loads(out)
               if progs.get(link.get("prog_id"), "").startswith("st_"))


class Running:
    """A started tracer whose output lines are collected as they come."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc = proc
        self.out: list[str] = []
        self.err: list[str] = []
        self._threads = [
            threading.Thread(target=self._collect, args=(proc.stdout, self.out), daemon=True),
            threading.Thread(target=self._collect, args=(proc.stderr, self.err), daemon=True),
        ]
        for t in self._threads:
            t.start()

    @staticmethod
    def _collect(stream: IO[str] | None, into: list[str]) -> None:
        assert stream is not None
        for line in stream:
            into.append(line.rstrip("\n"))

    def requests(self) -> list[dict[str, Any]]:
        return [json.loads(x) for x in list(self.out) if x.startswith("{")]

    def wait_for(self, what: str, done: Callable[[], bool], timeout: float = 20) -> None:
        """Poll `done` until true; AssertionError naming `what` after `timeout` s."""
        deadline = time.monotonic() + timeout
        while not done():
            if time.monotonic() > deadline:
                raise AssertionError(f"no {what} within {timeout:.0f} s: {self.err[-3:]}")
            time.sleep(0.1)

    def wait_clients(self, clients: list[str], timeout: float = 20) -> None:
        """Until a request of every client in `clients` was shown."""
        want = set(clients)
        self.wait_for(f"requests of {len(want)} clients",
                      lambda: want <= {r["client"] for r in self.requests()}, timeout)

    def stop(self) -> None:
        """Ctrl-C, then wait for it and its output."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout=60)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            for t in self._threads:
                t.join(5)
