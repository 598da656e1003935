"""The TUI's memory: a bounded, filterable list of requests and per-service counters."""

from __future__ import annotations

import itertools
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from tracer.model import Request, Status
from tracer.sinks.narrate import task_name
from tracer.sinks.service_name import service_name

# Filter keys a user can type as key:value; plain words match any of them and the hops.
FILTER_KEYS = ("service", "task", "client", "status", "mode", "node")
# Keys whose value must match whole: `service:vote` is not `vote-vip`, `mode:dns` not `dnsrr`.
EXACT_KEYS = frozenset({0, 3, 4})
LONG_CONNECTION_S = 1.0  # a connection open this long likely carries many requests
SLICE_IDS = 128  # a filter looks at the clock after this many requests (~0.05-0.5 ms)


def task_of(r: Request) -> str:
    """The backend a request reached, by name when enrichment named it, else by address; the
    node it runs on has a column of its own."""
    return task_name(r)


def revision(r: Request) -> tuple[object, ...]:
    """What changes when the correlator updates a request in place (open -> ok, new hops)."""
    return (r.status, len(r.hops), r.reply_ns, r.end_ns, r.backend_addr, r.backend_name, r.service)


def request_fields(r: Request) -> tuple[str, ...]:
    """The words a filter matches, in FILTER_KEYS order."""
    nodes = {h.node for h in r.hops if h.node}
    return (
        service_name(r),  # a DNS query is about the service it names, as in `replay --service`
        task_of(r),
        f"{r.client.saddr}:{r.client.sport}",
        r.status.value,
        r.mode,
        " ".join(sorted(nodes)),
    )


Haystack = tuple[tuple[str, ...], str]  # lowercase fields (FILTER_KEYS order), all in one string
_KEY_INDEX = {k: i for i, k in enumerate(FILTER_KEYS)}


def haystack(r: Request) -> Haystack:
    joined = "\x00".join(request_fields(r)).lower()
    # Plain words also find what happened on the way: `vxlan`, `ingress_sbox`, `snat`, a VNI.
    hops = " ".join(f"{h.where} {h.kind} {h.detail}" for h in r.hops).lower()
    anywhere = f"{joined}\x00{r.client.daddr}:{r.client.dport}\x00{r.backend_addr}\x00{hops}"
    return tuple(joined.split("\x00")), anywhere


@dataclass(frozen=True)
class Query:
    """A parsed filter: every term must match (AND)."""

    terms: tuple[tuple[int, str], ...] = ()  # (field index, or -1 = anywhere; lowercase text)

    @classmethod
    def parse(cls, text: str) -> Query:
        terms = []
        for word in text.lower().split():
            key, sep, value = word.partition(":")
            if sep and key in _KEY_INDEX:
                terms.append((_KEY_INDEX[key], value))
            else:
                terms.append((-1, word))
        return cls(tuple(terms))

    @property
    def text(self) -> str:
        return " ".join(f"{FILTER_KEYS[k]}:{v}" if k >= 0 else v for k, v in self.terms)

    def matches(self, hay: Haystack) -> bool:
        # Plain loop, no generator: this runs 100k times per keystroke.
        fields, anywhere = hay
        for key, value in self.terms:
            if key in EXACT_KEYS:
                if value != fields[key]:
                    return False
            elif value not in (fields[key] if key >= 0 else anywhere):
                return False
        return True


@dataclass
class TaskCount:
    connections: int = 0
    dropped: int = 0
    reply_ms_total: float = 0.0
    replies: int = 0
    longest_s: float = 0.0  # the longest connection seen to this task

    @property
    def mean_reply_ms(self) -> float | None:
        return self.reply_ms_total / self.replies if self.replies else None


@dataclass
class ServiceCount:
    tasks: dict[str, TaskCount] = field(default_factory=dict)

    @property
    def connections(self) -> int:
        return sum(t.connections for t in self.tasks.values())


def service_key(r: Request) -> str:
    # Without Docker names (netns lab) a service is known by the address clients connect to.
    return r.service or f"port {r.client.dport}"


class RequestStore:
    """Newest `capacity` requests in arrival order; updates keep a request's place."""

    def __init__(self, capacity: int = 200_000) -> None:
        self.capacity = capacity
        self._by_id: dict[int, Request] = {}
        self._order: deque[int] = deque()
        self._query = Query()
        self._view: deque[int] | None = None  # ids matching the query; None = no filter
        self._hay: dict[int, Haystack] = {}  # filled lazily, the first time a filter runs
        # Atomic values only (dropped or not, no Status member): the collector stops tracking
        # such a tuple, so a full collection does not walk one per stored request.
        self._counted: dict[int, tuple[str, str, bool, float | None, float]] = {}
        self.services: dict[str, ServiceCount] = {}
        self._colors: dict[str, int] = {}
        self.seen = 0  # requests ever stored, evicted included
        self.version = 0  # bumps on every change: screens redraw when it moved
        # Positions that survive eviction: index + view_base names the same request until the
        # query changes (query_version), so a selection is kept without searching 100k ids.
        self.view_base = 0
        self.query_version = 0

    def clear(self) -> None:
        """Forget every request (a replay starting over); the filter stays."""
        self._by_id.clear()
        self._order.clear()
        self._view = None if self._view is None else deque()
        self._hay.clear()
        self._counted.clear()
        self.services.clear()
        self.view_base = 0
        self.query_version += 1
        self.version += 1

    def __len__(self) -> int:
        return len(self._order if self._view is None else self._view)

    @property
    def total(self) -> int:
        return len(self._order)

    @property
    def query(self) -> Query:
        return self._query

    @property
    def query_text(self) -> str:
        return self._query.text

    def at(self, index: int) -> Request:
        ids = self._order if self._view is None else self._view
        return self._by_id[ids[index]]

    def window(self, start: int, count: int) -> Iterator[Request]:
        ids = self._order if self._view is None else self._view
        # Index the deque (it walks from its nearer end) rather than islice it, which steps
        # over every id before start: ~1 ms per frame deep in 100k requests.
        for i in range(max(start, 0), min(start + count, len(ids))):
            yield self._by_id[ids[i]]

    def get(self, request_id: int) -> Request | None:
        return self._by_id.get(request_id)

    def index_of(self, request_id: int) -> int | None:
        ids = self._order if self._view is None else self._view
        for i, rid in enumerate(ids):
            if rid == request_id:
                return i
        return None

    def position(self, index: int) -> tuple[int, int]:
        """A handle on the request at index that stays valid while requests come and go."""
        return self.query_version, self.view_base + index

    def index_at(self, position: tuple[int, int], request_id: int) -> int | None:
        """Where the request of a position() is now; None if evicted."""
        version, pos = position
        if version == self.query_version:
            index = pos - self.view_base
            return index if 0 <= index < len(self) else None
        return self.index_of(request_id)  # the filter changed: search once

    def find(self, start: int, pred: Callable[[Request], bool]) -> int | None:
        """Index of the first request at or after start in the view that satisfies pred."""
        ids = self._order if self._view is None else self._view
        for i, rid in enumerate(itertools.islice(ids, start, None), start):
            if pred(self._by_id[rid]):
                return i
        return None

    def color_of(self, backend: str) -> int:
        """A stable small number per backend task (first seen = 0), for its colour."""
        return self._colors.setdefault(backend, len(self._colors))

    def apply(self, requests: Iterable[Request]) -> None:
        # Runs on the UI thread for every request of every batch (12k/s in scripts/bench tui):
        # a key that comes meanwhile waits for it, so lookups are hoisted out of the loop.
        by_id, order, colors, count = self._by_id, self._order, self._colors, self._count
        for r in requests:
            rid = r.id
            if rid not in by_id:
                order.append(rid)
                self.seen += 1
                if self._view is not None and self._matches(r):
                    self._view.append(rid)
            else:
                self._hay.pop(rid, None)
            by_id[rid] = r
            task = task_of(r)
            if task:
                count(r, task)
                if task not in colors:
                    colors[task] = len(colors)
        while len(self._order) > self.capacity:
            self._evict()
        self.version += 1

    def _evict(self) -> None:
        rid = self._order.popleft()
        del self._by_id[rid]
        self._counted.pop(rid, None)
        self._hay.pop(rid, None)
        # Both deques are in arrival order, so the oldest id can only be first in the view.
        if self._view is None:
            self.view_base += 1
        elif self._view and self._view[0] == rid:
            self._view.popleft()
            self.view_base += 1

    def set_query(self, text: str) -> None:
        """Filter now (in the calling thread)."""
        job = self.query_job(text)
        self.install(job, job.run())

    def query_job(self, text: str) -> QueryJob:
        """A filter to run, at once or a slice at a time, over the requests stored now."""
        # A tuple: the garbage collector looks through a tuple of ints once and then leaves it
        # alone; a list of 100k ids was scanned again by every young collection while typing.
        query = Query.parse(text)
        ids = tuple(self._order) if query.terms else ()  # no filter shows what is stored
        return QueryJob(query, ids, self.seen, self._by_id, self._hay)

    def install(self, job: QueryJob, matched: deque[int]) -> None:
        """Show what a job matched, plus what arrived while it ran (UI thread only)."""
        self._query = job.query
        self.query_version += 1
        self.view_base = 0
        if not job.query.terms:
            self._view = None
        else:
            while matched and matched[0] not in self._by_id:
                matched.popleft()  # evicted while the job ran
            arrived = self.seen - job.seen
            if arrived:
                news = itertools.islice(self._order, max(len(self._order) - arrived, 0), None)
                matched.extend(rid for rid in news if self._matches(self._by_id[rid]))
            self._view = matched
        self.version += 1

    def _matches(self, r: Request) -> bool:
        hay = self._hay.get(r.id)
        if hay is None:
            hay = self._hay[r.id] = haystack(r)
        return self._query.matches(hay)

    def _count(self, r: Request, task: str) -> None:
        """Per service and task counters; an updated request replaces its earlier count."""
        if r.mode == "dns":
            return  # a query to Docker's resolver is not balanced over a service's tasks
        duration = (r.end_ns - r.start_ns) / 1e9 if r.end_ns else 0.0
        reply_ms = (r.reply_ns - r.start_ns) / 1e6 if r.reply_ns else None  # r.reply_ms, inlined
        key = (service_key(r), task, r.status is Status.DROPPED, reply_ms, duration)
        old = self._counted.get(r.id)
        if old == key:
            return
        if old is not None:
            self._add(*old, sign=-1)
        self._add(*key, sign=1)
        self._counted[r.id] = key

    def _add(
        self,
        service: str,
        task: str,
        dropped: bool,
        reply_ms: float | None,
        duration: float,
        sign: int,
    ) -> None:
        # get() first: setdefault would build a ServiceCount and a TaskCount every time.
        counts = self.services.get(service)
        if counts is None:
            counts = self.services[service] = ServiceCount()
        t = counts.tasks.get(task)
        if t is None:
            t = counts.tasks[task] = TaskCount()
        t.connections += sign
        t.dropped += sign * dropped
        if reply_ms is not None:
            t.reply_ms_total += sign * reply_ms
            t.replies += sign
        if sign > 0:
            t.longest_s = max(t.longest_s, duration)


@dataclass(eq=False, repr=False)
class QueryJob:
    """One filter over a snapshot of ids, run at once or a slice at a time (advance)."""

    query: Query
    ids: tuple[int, ...]
    seen: int  # store.seen when the snapshot was taken
    by_id: dict[int, Request]
    hay: dict[int, Haystack]
    cancelled: bool = False  # set by the UI when a newer filter replaces this one
    matched: deque[int] = field(default_factory=deque)
    done: int = 0  # ids[:done] are matched

    def __repr__(self) -> str:
        # Short: Textual's @work puts its arguments' repr in the worker's name.
        return f"QueryJob({self.query.text!r}, {len(self.ids)} requests)"

    def run(self) -> deque[int]:
        self.advance(None)
        return self.matched

    def advance(self, slice_s: float | None) -> bool:
        """Match for about slice_s seconds (None: to the end); True when finished or cancelled."""
        ids, out, by_id, hay_of, matches = (
            self.ids, self.matched, self.by_id, self.hay, self.query.matches)
        if not self.query.terms:
            self.done = len(ids)  # no filter: the store shows everything, nothing to match
        deadline = time.perf_counter() + slice_s if slice_s is not None else None
        while self.done < len(ids) and not self.cancelled:
            stop = min(self.done + SLICE_IDS, len(ids))
            for rid in ids[self.done : stop]:
                r = by_id.get(rid)
                if r is None:
                    continue  # evicted meanwhile
                # The same lazy cache as RequestStore._matches, inlined: a call per request
                # here costs 10% of a 100k-request filter.
                hay = hay_of.get(rid)
                if hay is None:
                    hay = hay_of[rid] = haystack(r)
                if matches(hay):
                    out.append(rid)
            self.done = stop
            if deadline is not None and time.perf_counter() >= deadline:
                break
        return self.done >= len(ids) or self.cancelled
