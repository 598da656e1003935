"""Live tracing set-up shared by `trace`, `tui` and `demo`: backend, names, lab notes."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import TYPE_CHECKING

from tracer.diagnose.conntrack import conntrack_use
from tracer.diagnose.rule_counters import RuleCounters, netns_files
from tracer.enrich import open_names
from tracer.pipeline import Pipeline
from tracer.probes.choose import choose, open_source
from tracer.source import Filter

if TYPE_CHECKING:
    from tracer.remote.collector import AgentAddr


def lab_lb_note() -> str:
    """The netns lab on a kernel without IPVS balances with iptables: say so on LB hops."""
    from tracer.lab.netns_lab import built

    info = built()
    return "IPVS stand-in: iptables round-robin DNAT" if info and info.lb == "stand-in" else ""


@contextmanager
def open_pipeline(backend: str, flt: Filter, nftrace: bool = False) -> Iterator[Pipeline]:
    """nftrace: also name nftables drops from the kernel's trace events (adds rules)."""
    chosen, why = choose(backend)
    with open_source(chosen, flt) as source, open_names() as names, ExitStack() as stack:
        pipe = Pipeline(source, names, lab_lb_note())
        pipe.backend_reason = why
        pipe.conntrack = conntrack_use
        counters = RuleCounters()
        # Counters know no flows: the rules whose counts rose in the netns since it began.
        pipe.dropped_by = lambda ino, start, proto, flows: counters.dropped_since(ino, start)
        if nftrace:
            from tracer.diagnose.nftrace import nftrace as open_nftrace

            traced = stack.enter_context(open_nftrace(flt, netns_files())).dropped_since
            # A traced drop names its rule; an iptables-legacy drop still has the counters.
            pipe.dropped_by = lambda ino, start, proto, flows: \
                traced(ino, start, proto, flows) or counters.dropped_since(ino, start)
        yield pipe


@contextmanager
def open_swarm_pipeline(agents: list[AgentAddr], token: bytes) -> Iterator[Pipeline]:
    """Every node's agent merged: the names come from the agents too."""
    from tracer.remote.collector import Collector

    with Collector(agents, token) as source:
        pipe = Pipeline(source, source.names)
        up = sum(source.agents().values())
        pipe.backend_reason = f"{up} of {len(agents)} agents streaming"
        yield pipe
