#!/usr/bin/env python3
"""Agent -> collector cost on loopback: the collector's CPU per 1,000 requests/s and the
agent's user-space CPU per 100k events/s, with the requests of tracer.tracefile.synthetic
(routing-mesh shaped, every packet: 40 events per request, 5x a live filtered trace).

The agent runs in a child process fed at the given request rate; the collector correlates
in this one. Kernel-side probe cost is not here (see "Measured overhead" in the README).
Run: .venv/bin/python scripts/bench_remote.py --rate 1000 --seconds 10
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import resource
import tempfile
import threading
import time
from multiprocessing.connection import Connection
from pathlib import Path

import numpy as np

from tracer.gc_pacing import paced_gc
from tracer.pipeline import Pipeline
from tracer.remote.agent import Agent, AgentOptions
from tracer.remote.auth import new_token
from tracer.remote.collector import AgentAddr, Collector
from tracer.source import Filter, SourceInfo, SourceStats
from tracer.tracefile.synthetic import EVENTS_PER_REQUEST, mesh_events


class _Paced:
    """Synthetic events released at their own pace, moved to now."""

    def __init__(self, events: np.ndarray) -> None:
        self.info = SourceInfo("core", "bench", True)
        self._events = events
        self._pos = 0
        self._t0 = 0
        self.finished = False

    def __enter__(self) -> _Paced:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def poll(self, timeout_s: float) -> np.ndarray:
        time.sleep(min(timeout_s, 0.01))
        now = time.monotonic_ns()
        if not self._t0:
            self._t0 = now - int(self._events["ts_ns"][0])
        due = int(np.searchsorted(self._events["ts_ns"], now - self._t0, side="right"))
        out = self._events[self._pos:due].copy()
        self._pos = due
        out["ts_ns"] = (out["ts_ns"].astype(np.int64) + self._t0).astype(np.uint64)
        return out

    def stats(self) -> SourceStats:
        return SourceStats()


def _agent(token: bytes, rate: float, seconds: float, conn: Connection) -> None:
    events = mesh_events(int(rate * (seconds + 5)), rate_per_s=rate)
    agent = Agent(AgentOptions("127.0.0.1", 0, token, "bench"), _Paced(events), None, Filter())
    conn.send(agent.address)

    def serve() -> None:
        with paced_gc() as between_polls:  # `swarmtrace agent`'s GC policy

            def until() -> bool:  # asked once per read of the source, as the command does
                between_polls()
                return False

            agent.serve(until=until)

    t = threading.Thread(target=serve, daemon=True)
    cpu0 = time.process_time()
    t.start()
    conn.recv()  # the collector is done
    conn.send((time.process_time() - cpu0, agent.events_sent))
    agent.stop()
    t.join(timeout=5)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rate", type=float, default=1000.0, help="requests per second")
    ap.add_argument("--seconds", type=float, default=10.0)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        token = new_token(Path(tmp) / "token")
    ctx = multiprocessing.get_context("fork")
    mine, theirs = ctx.Pipe()
    child = ctx.Process(target=_agent, args=(token, args.rate, args.seconds, theirs))
    child.start()
    host, port = mine.recv()
    with Collector([AgentAddr(host, port)], token) as coll:
        pipe = Pipeline(coll, None)
        requests = 0
        start = resource.getrusage(resource.RUSAGE_SELF)
        t0 = time.monotonic()
        with paced_gc() as between_polls:  # `trace --swarm`'s GC policy
            while time.monotonic() - t0 < args.seconds:
                between_polls()
                requests += len(pipe.poll(0.1))
        end = resource.getrusage(resource.RUSAGE_SELF)
        wall = time.monotonic() - t0
        dropped = coll.stats().lost  # what the agent could not queue for a slow collector
    mine.send("done")
    agent_cpu, sent = mine.recv()
    child.join()
    cpu = (end.ru_utime - start.ru_utime) + (end.ru_stime - start.ru_stime)
    req_s = requests / wall
    print(json.dumps({
        "rate_req_s": args.rate, "events_per_request": EVENTS_PER_REQUEST,
        "requests_per_s": round(req_s), "events_per_s": round(req_s * EVENTS_PER_REQUEST),
        "collector_cpu_pct": round(100 * cpu / wall, 1),
        "collector_cpu_pct_per_1k_req_s": round(100 * cpu / wall / (req_s / 1000), 1),
        "agent_user_cpu_pct": round(100 * agent_cpu / wall, 1),
        "agent_events_sent": sent,
        "dropped_for_slow_collector": dropped,
        "load_avg_1m": round(os.getloadavg()[0], 2),
    }))


if __name__ == "__main__":
    main()
