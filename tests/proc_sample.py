"""What a running tracer holds, read from /proc: memory, file descriptors by kind, and the
network namespaces it should have hooked. Per process, so other tracers on the machine do not
blur the figures."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path

from tracer.probes import netns


@dataclass(frozen=True)
class Sample:
    t_s: float  # since the run started
    rss_kib: int
    fds: int  # all open file descriptors
    links: int  # BPF links (netfilter hooks in each netns, tracepoints)
    maps: int  # BPF map fds
    progs: int  # BPF program fds
    netns_fds: int  # open netns files (each keeps its netns alive)
    netns: int  # network namespaces on the machine when sampled (what the tracer should hook)
    # The most RSS so far (VmHWM). RSS that steps up with it, and stays, is memory a large
    # transient (a poll that read a backlog) took and the allocator kept, not a leak.
    peak_kib: int

    def to_json(self) -> dict[str, float | int]:
        return asdict(self)


def _memory_kib(pid: int) -> tuple[int, int]:
    """VmRSS and VmHWM."""
    found = {"VmRSS:": 0, "VmHWM:": 0}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, *rest = line.split()
        if key in found:
            found[key] = int(rest[0])
    return found["VmRSS:"], found["VmHWM:"]


def sample(pid: int, t_s: float) -> Sample:
    kinds = {"anon_inode:bpf_link": 0, "anon_inode:bpf-map": 0, "anon_inode:bpf-prog": 0,
             "net": 0}
    fd_dir = f"/proc/{pid}/fd"
    names = os.listdir(fd_dir)
    for name in names:
        try:
            target = os.readlink(f"{fd_dir}/{name}")
        except OSError:
            continue  # closed meanwhile
        kind = "net" if target.startswith("net:[") else target
        if kind in kinds:
            kinds[kind] += 1
    rss, peak = _memory_kib(pid)
    return Sample(t_s, rss, len(names), kinds["anon_inode:bpf_link"],
                  kinds["anon_inode:bpf-map"], kinds["anon_inode:bpf-prog"], kinds["net"],
                  len(netns.discover()), peak)
