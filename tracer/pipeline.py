"""The one data path every front end runs: source -> correlate -> enrich -> requests."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import numpy as np

from tracer.correlate import Correlator
from tracer.diagnose.conntrack import ConntrackUse
from tracer.diagnose.verdict import DroppedBy, explain
from tracer.enrich.annotate import Annotator
from tracer.enrich.names import Names
from tracer.model import Request, Status
from tracer.source import AgentSource, EventSource

RawTap = Callable[[np.ndarray], None]
# Reads of what a live source still holds at the end: enough for a full 16 MiB ring read in
# batches, bounded so that a source still being flooded cannot keep us from stopping.
DRAIN_READS = 64
ConntrackProbe = Callable[[], ConntrackUse | None]


class Pipeline:
    """Poll a source, turn its events into finished, named requests.

    It sets no GC policy: the front end running it does (tracer/gc_pacing.py for `trace`,
    `replay` and the benches, tracer/tui/collector.py for the TUI)."""

    def __init__(self, source: EventSource, names: Names | None = None, lb_note: str = "") -> None:
        self.source = source
        # Checked once: a runtime Protocol check costs ~10 µs, too much per request.
        self._agent_source = source if isinstance(source, AgentSource) else None
        self.names = names
        self.lb_note = lb_note
        self.annotator = Annotator(names, lb_note)
        self.correlator = Correlator(source.info.drop_reasons)
        self.taps: list[RawTap] = []  # see raw events first (trace file recorder)
        self.events = 0
        self.backend_reason = ""  # why this probe backend was picked (live only)
        # The kernel's conntrack use, read when a request fails (live only: a replay cannot).
        self.conntrack: ConntrackProbe | None = None
        # Which netfilter rule dropped a request's packets (live only).
        self.dropped_by: DroppedBy | None = None
        self._lost = 0  # the source's lost-event counter when last compared

    def _loss_note(self) -> str | None:
        """If the kernel lost events since the last call: the note for the requests that
        were in flight meanwhile (those still open, those that finished in this batch)."""
        lost = self.source.lost()  # not stats(): it reads every counter, on every poll
        if lost <= self._lost:
            return None
        n, self._lost = lost - self._lost, lost
        return (f"{n} events lost in the kernel while it was in flight (ring buffer full): "
                "hops may be missing")

    def _mark_loss(self, done: list[Request]) -> list[Request]:
        if (note := self._loss_note()) is not None:
            for req in done:
                req.missing.append(note)
            self.correlator.mark_open(note)
        return done

    def pump(self, timeout_s: float) -> np.ndarray:
        """Read events and hand them to the taps only (record now, correlate at replay)."""
        arr = self.source.poll(timeout_s)
        if len(arr):
            for tap in self.taps:
                tap(arr)
        self.events += len(arr)
        return arr

    def poll(self, timeout_s: float) -> list[Request]:
        """pump() then correlate(): a front end that sets a GC policy for the correlating
        only (the TUI's feed thread) calls the two itself."""
        return self.correlate(self.pump(timeout_s))

    def correlate(self, arr: np.ndarray) -> list[Request]:
        """Events pump() read into the requests they finish; idle requests end by the clock
        too, not only by the next event (same clock as BPF)."""
        return self._correlated(arr, expire=self.source.info.live)

    def _correlated(self, arr: np.ndarray, expire: bool = False) -> list[Request]:
        """arr's events into the requests they finish, marked for loss and named."""
        done = self.correlator.feed_array(arr)
        if expire:
            done += self.correlator.expire(time.monotonic_ns())
        return [self._finish(r) for r in self._mark_loss(done)]

    def flush(self) -> list[Request]:
        return [self._finish(r) for r in self._mark_loss(self.correlator.flush())]

    def pump_rest(self) -> Iterator[np.ndarray]:
        """At the end (Ctrl-C): the events the source still holds, which the kernel wrote
        before we stopped (the last request's, often), through the taps (the recorder)."""
        for _ in range(DRAIN_READS):
            arr = self.pump(0)
            if not len(arr):
                return
            yield arr

    def drain(self) -> list[Request]:
        """pump_rest() correlated, then every request in flight as it stands."""
        done = []
        for arr in self.pump_rest():
            done += self._correlated(arr)
        return done + self.flush()

    def _finish(self, req: Request) -> Request:
        agents = self._agent_source.agents() if self._agent_source is not None else None
        if agents:
            req.missing = [f"{node}: no agent, its hops are missing"
                           for node, up in sorted(agents.items()) if not up]
        req = self.annotator.annotate(req, agents)
        if req.status not in (Status.OK, Status.OPEN):
            req.verdict = explain(req, self.names, self.conntrack() if self.conntrack else None,
                                  self.dropped_by)
        return req
