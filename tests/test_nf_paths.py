"""st_nf_hook's paths on the running kernel, without the lab: BPF_PROG_TEST_RUN of the cases
`scripts/bench nfprog` times, and what each leaves in the kernel's counters (the cheap exits
must not drop what the filter wants)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tracer.bench.nfprog import (
    CASES,
    FULL_MAP_FLOWS,
    NF_INET_PRE_ROUTING,
    hook_state,
    load_program,
    new_flow_syn,
    new_flows_ns,
)
from tracer.probes import libbpf
from tracer.probes.core import (
    CNT_EMITTED,
    CNT_FILTERED,
    CNT_LOST,
    RING_BYTES,
    kernel_at_least,
    per_cpu_counter,
)
from tracer.probes.ringbuf import RingReader

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root: BPF"),
    pytest.mark.skipif(not Path("/sys/kernel/btf/vmlinux").exists(), reason="kernel has no BTF"),
    pytest.mark.skipif(not kernel_at_least(6, 4), reason="no BPF netfilter programs before 6.4"),
]

# (events, filtered) each case adds: in CASES' order.
EXPECTED = ((0, 0), (0, 0), (0, 1), (1, 0))


def test_each_path_emits_only_what_the_filter_wants() -> None:
    obj = load_program()
    try:
        prog, ncpu = obj.prog_fd("st_nf_hook"), os.cpu_count() or 1

        def counters() -> tuple[int, int]:
            return (sum(per_cpu_counter(obj, CNT_EMITTED, ncpu)),
                    sum(per_cpu_counter(obj, CNT_FILTERED, ncpu)))

        for (label, hook, packet), (events, filtered) in zip(CASES, EXPECTED, strict=True):
            before = counters()
            retval, _ = libbpf.prog_test_run(prog, packet, hook_state(hook), 1)
            after = counters()
            assert retval == 1, label  # NF_ACCEPT: the tracer never drops a packet
            assert (after[0] - before[0], after[1] - before[1]) == (events, filtered), label
    finally:
        obj.close()


def test_new_flows_into_a_full_flow_map_each_give_one_event() -> None:
    # The flood's case: every insert evicts an older entry (the ring is drained meanwhile).
    obj = load_program()
    ring = RingReader(obj.map_fd("st_events"), RING_BYTES)
    try:
        prog, ncpu = obj.prog_fd("st_nf_hook"), os.cpu_count() or 1
        new_flows_ns(prog, ring, 0, FULL_MAP_FLOWS)
        before = sum(per_cpu_counter(obj, CNT_EMITTED, ncpu))
        state = hook_state(NF_INET_PRE_ROUTING)
        for i in range(FULL_MAP_FLOWS, FULL_MAP_FLOWS + 64):
            assert libbpf.prog_test_run(prog, new_flow_syn(i), state, 1)[0] == 1
        assert sum(per_cpu_counter(obj, CNT_EMITTED, ncpu)) - before == 64
        assert sum(per_cpu_counter(obj, CNT_LOST, ncpu)) == 0
    finally:
        ring.close()
        obj.close()
