#!/usr/bin/env python3
"""TUI key-press latency: with 100k requests loaded, then while ~100k events/s stream in.

Runs the real app headless, fed by a ListFeed of requests cloned from
tests/fixtures/requests_sample.json (~10 hops = ~10 events each). Latency of a key = from the
key event reaching the app to the first frame the app renders after handling it (the frame a
terminal would show). Target: p95 < 50 ms.
usage: .venv/bin/python scripts/bench_tui.py [--loaded 100000] [--rate 10000] [--seconds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import os
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rich.console import RenderableType  # noqa: E402
from textual import events  # noqa: E402
from textual.screen import Screen  # noqa: E402

from tracer.model import Request  # noqa: E402
from tracer.source import SourceInfo  # noqa: E402
from tracer.tui.app import SwarmtraceApp  # noqa: E402
from tracer.tui.feed import ListFeed  # noqa: E402
from tracer.tui.request_json import load_requests  # noqa: E402

TARGET_MS = 50.0
# Keys a user presses while watching: move, page, jump to a drop, screens, talk mode, filter.
KEYS = ("down", "up", "pagedown", "pageup", "n", "end", "2", "1", "t", "right", "right", "1")


def clones(templates: list[Request], count: int, start_ns: int, gap_ns: int) -> list[Request]:
    """count requests shaped like the templates, gap_ns apart from start_ns, fresh ids."""
    out = []
    for i in range(count):
        t = templates[i % len(templates)]
        start = start_ns + i * gap_ns
        shift = start - t.start_ns
        hops = [dataclasses.replace(h, ts_ns=h.ts_ns + shift) for h in t.hops]
        out.append(
            dataclasses.replace(
                t,
                id=start_ns // 1000 + i,
                start_ns=start,
                hops=hops,
                reply_ns=t.reply_ns + shift if t.reply_ns else 0,
                end_ns=t.end_ns + shift if t.end_ns else 0,
            )
        )
    return out


class TimedApp(SwarmtraceApp):
    """The app, noting when a key was handled and when the next frame was rendered."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.key_handled = 0.0
        self.frame: asyncio.Event | None = None
        self.frame_cpu = 0.0  # CPU time of the UI thread when the frame was rendered

    async def on_event(self, event: events.Event) -> None:
        await super().on_event(event)
        if isinstance(event, events.Key):
            self.key_handled = time.perf_counter()

    def _display(self, screen: Screen[Any], renderable: RenderableType | None) -> None:
        super()._display(screen, renderable)
        if renderable is not None and self.key_handled and self.frame is not None:
            if not self.frame.is_set():
                self.frame_cpu = time.thread_time()
            self.frame.set()


async def press_all(
    app: TimedApp, pilot: Any, keys: tuple[str, ...], cpu: list[float] | None = None
) -> list[float]:
    """Milliseconds from each key event to the first frame rendered after it was handled;
    `cpu` gets the UI thread's CPU milliseconds for the same span (independent of load)."""
    out = []
    for key in keys:
        char = key if len(key) == 1 else {"slash": "/"}.get(key)
        app.key_handled, app.frame = 0.0, asyncio.Event()
        t0, c0 = time.perf_counter(), time.thread_time()
        assert app._driver is not None
        app._driver.send_message(events.Key(key, char))
        # No frame at all: a key with no visible effect; its handling time counts.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(app.frame.wait(), timeout=5)
        end = time.perf_counter() if app.frame.is_set() else app.key_handled
        out.append((end - t0) * 1e3)
        used = ((app.frame_cpu if app.frame.is_set() else time.thread_time()) - c0) * 1e3
        if cpu is not None:
            cpu.append(used)
        if os.environ.get("BENCH_TUI_VERBOSE"):
            print(f"  {key:<10} wall {out[-1]:7.1f} ms  cpu {used:6.1f} ms")
        await pilot.pause(0.05)  # a user does not press 100 keys a second
    return out


def report(name: str, ms: list[float], cpu: list[float]) -> bool:
    """One line per scenario: wall latency (what a user waits) and UI-thread CPU per key."""

    def p(values: list[float], q: float) -> float:
        v = sorted(values)
        return v[min(len(v) - 1, int(len(v) * q))]

    ok = p(ms, 0.95) < TARGET_MS
    print(f"{name:<32} n={len(ms):<3} wall p50 {p(ms, 0.5):5.1f} p95 {p(ms, 0.95):6.1f} "
          f"max {max(ms):6.1f} ms | cpu p50 {p(cpu, 0.5):5.1f} p95 {p(cpu, 0.95):5.1f} ms"
          f"  {'ok' if ok else 'OVER'}")
    return ok


async def run(loaded: int, rate: int, seconds: float) -> bool:
    templates, _ = load_requests(ROOT / "tests" / "fixtures" / "requests_sample.json")
    t0 = 1_000_000_000_000
    t_build = time.perf_counter()
    # Loaded requests all lie before the replay clock's start; streamed ones follow at `rate`.
    preload = clones(templates, loaded, t0 - loaded * 1000, 1000)
    stream = clones(templates, int(rate * seconds), t0 + 1, 1_000_000_000 // rate)
    print(f"built {len(preload) + len(stream)} requests in {time.perf_counter() - t_build:.1f} s")
    info = SourceInfo("bench", "", live=True)
    feed = ListFeed(preload + stream, info=info, paced=True)
    feed.set_paused(True)  # first the loaded part only: move the clock to its end
    feed.seek((t0 - preload[0].start_ns) / 1e9)
    app = TimedApp(feed)
    app.state.paused = True  # as the feed is: talk mode then leaves the pause alone
    ok = True
    async with app.run_test(size=(100, 30)) as pilot:
        while app.state.store.total < loaded:
            await pilot.pause(0.05)
        print(f"loaded {app.state.store.total} requests")
        cpu: list[float] = []
        ok &= report("loaded: keys", await press_all(app, pilot, KEYS * 3, cpu), cpu)
        filter_keys = ("slash", *"backend-2", "enter", "escape")
        cpu = []
        typed = await press_all(app, pilot, filter_keys, cpu)
        ok &= report("loaded: filter as you type", typed, cpu)
        feed.set_paused(False)
        app.state.paused = False
        events0, t_start = app.state.stats.events if app.state.stats else 0, time.perf_counter()
        streamed: list[float] = []
        cpu = []
        while time.perf_counter() - t_start < seconds and not feed.finished:
            streamed += await press_all(app, pilot, ("down", "up", "n", "end"), cpu)
            await pilot.pause(0.1)
        elapsed = time.perf_counter() - t_start
        await pilot.pause(0.3)
        events = (app.state.stats.events if app.state.stats else 0) - events0
        print(f"streamed {events / elapsed:,.0f} events/s ({events} events in {elapsed:.1f} s), "
              f"store {app.state.store.total} requests")
        ok &= report("while streaming: keys", streamed, cpu)
    return ok


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--loaded", type=int, default=100_000, help="requests loaded first")
    ap.add_argument("--rate", type=int, default=12_000, help="requests/s streamed (~9 events each)")
    ap.add_argument("--seconds", type=float, default=5.0, help="how long to stream")
    args = ap.parse_args()
    ok = asyncio.run(run(args.loaded, args.rate, args.seconds))
    print(f"target wall p95 < {TARGET_MS:.0f} ms: {'met' if ok else 'NOT met'}"
          f" (load average now {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
