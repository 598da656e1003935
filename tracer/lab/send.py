"""Requests through the lab, sent by a subprocess in a client netns (the caller keeps its own)."""

from __future__ import annotations

import json
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Literal

from tracer.errors import LabError
from tracer.lab import namespaces
from tracer.lab.http_client import TIMEOUT_S
from tracer.lab.netns_lab import require_root, require_up
from tracer.lab.topology import CLIENT, MESH_TARGET, VIP_CLIENT, VIP_TARGET

Mode = Literal["mesh", "vip"]
MODES: dict[str, tuple[str, str]] = {
    # mode: (client netns, target)
    "mesh": (CLIENT, MESH_TARGET),
    "vip": (VIP_CLIENT, VIP_TARGET),
}
CLIENT_MODULE = "tracer.lab.http_client"


@dataclass(frozen=True)
class Answer:
    """One request on its own TCP connection, and what came back."""

    client: str  # "ip:port" of the client's socket
    target: str  # "ip:port" it connected to
    backend: str  # the name in the body, e.g. "backend-1"; "" if none
    body: str
    ok: bool
    error: str

    def to_json(self) -> dict[str, object]:
        return asdict(self)


def _mode(mode: str) -> tuple[str, str]:
    try:
        return MODES[mode]
    except KeyError:
        raise LabError(f"unknown traffic mode {mode!r}: use mesh or vip") from None


def _client_lines(netns: str, args: list[str], timeout_s: float) -> Iterator[str]:
    """Run the lab client in `netns`; yield its stdout lines as they come."""
    argv = namespaces.exec_argv(netns, namespaces.python_argv(CLIENT_MODULE, *args))
    with subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=namespaces.child_env(),
    ) as proc:
        assert proc.stdout is not None and proc.stderr is not None
        # The client bounds each request by its own timeout; this only catches a hung client.
        watchdog = threading.Timer(timeout_s, proc.kill)
        watchdog.start()
        try:
            yield from proc.stdout
            err = proc.stderr.read()
            code = proc.wait()
        finally:
            watchdog.cancel()
            if proc.poll() is None:  # the caller stopped reading early
                proc.kill()
    if code != 0:
        lines = err.strip().splitlines()
        raise LabError(
            f"the lab client in {netns} failed: {lines[-1] if lines else f'exit {code}'}"
        )


def iter_traffic(mode: Mode, count: int, interval_s: float = 0.0) -> Iterator[Answer]:
    """Like traffic(), yielding each answer as soon as it is in."""
    require_root()
    require_up()
    netns, target = _mode(mode)
    args = ["requests", "--target", target, "--count", str(count), "--interval", str(interval_s)]
    for line in _client_lines(netns, args, count * (TIMEOUT_S + interval_s) + 10):
        if line.strip():
            yield Answer(**json.loads(line))


def traffic(mode: Mode, count: int, interval_s: float = 0.0) -> list[Answer]:
    """`count` HTTP GETs, each on a new connection, from the mode's client netns."""
    return list(iter_traffic(mode, count, interval_s))


def flood(mode: Mode, seconds: float, conns: int, rate: float = 0.0) -> float:
    """Completed requests per second with `conns` concurrent clients, for `seconds`, as fast
    as they go or paced to `rate` requests per second."""
    require_root()
    require_up()
    netns, target = _mode(mode)
    args = ["flood", "--target", target, "--seconds", str(seconds), "--conns", str(conns),
            "--rate", str(rate)]
    result = json.loads("".join(_client_lines(netns, args, seconds + TIMEOUT_S + 10)))
    return float(result["completed"]) / max(float(result["elapsed_s"]), 1e-9)
