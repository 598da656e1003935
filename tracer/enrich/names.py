"""The resolver API: what a netns inode, an address or a fwmark is, as of an event's time.

The correlator and the sinks call only this. Live implementations (NetnsNames, DockerNames)
and replay (history.recorded_names) answer the same way because both read a NameHistory.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Literal, Protocol

NetnsKind = Literal["host", "ingress_sbox", "lb", "overlay", "container", "named"]
AddrKind = Literal["task", "vip", "sandbox"]


def short_task(task: str) -> str:
    """`vote.2.uyhx...` (service.slot.task id) shortened as the issue's output shows it."""
    service, sep, rest = task.rpartition(".")
    return f"{service}.{rest[:4]}" if sep and len(rest) > 4 else task


@dataclass(frozen=True, slots=True)
class NetnsName:
    name: str  # "host", "ingress_sbox", "lb_overlay1", "1-overlay1", task name, "backend-1"
    kind: NetnsKind
    node: str | None = None
    container: str | None = None  # 12 hex digits
    task: str | None = None  # full task name: service.slot.taskid
    service: str | None = None

    @property
    def label(self) -> str:
        """Short human form: `vote.1.7iiu`, `node2 ingress_sbox`, `backend-1`."""
        if self.task:
            return short_task(self.task)
        return f"{self.node} {self.name}" if self.node else self.name

    def to_dict(self) -> dict[str, Any]:
        return _fields_set(self)


@dataclass(frozen=True, slots=True)
class AddrName:
    kind: AddrKind
    task: str | None = None
    container: str | None = None  # 12 hex digits
    service: str | None = None
    network: str | None = None
    node: str | None = None
    netns: str | None = None  # name of the netns the address lives in, when known

    @property
    def label(self) -> str:
        """Short human form: `vote.1.7iiu`, `vote VIP`, the netns or container it lives in."""
        if self.task:
            return short_task(self.task)
        if self.kind == "vip" and self.service:
            return f"{self.service} VIP"
        name = self.netns or self.container or self.service or "?"
        return f"{self.node} {name}" if self.node else name

    def to_dict(self) -> dict[str, Any]:
        return _fields_set(self)


def _fields_set(name: NetnsName | AddrName) -> dict[str, Any]:
    # By dataclasses.fields, not __slots__: a class compiled by mypyc has no __slots__.
    return {f.name: v for f in fields(name) if (v := getattr(name, f.name)) is not None}


class Names(Protocol):
    """Resolve kernel identifiers to Docker's (or the lab's) words as of time ts_ns.

    ts_ns is CLOCK_MONOTONIC nanoseconds, the clock of the events.
    """

    def netns(self, inode: int, ts_ns: int) -> NetnsName | None: ...

    def addr(self, ip: str, ts_ns: int) -> AddrName | None: ...

    def fwmark(self, netns_inode: int, mark: int, ts_ns: int) -> str | None: ...

    def network_vni(self, network: str, ts_ns: int) -> int | None: ...

    def snapshot(self) -> dict[str, Any]: ...

    def changes_since(self, start: int) -> dict[str, Any]:
        """The log entries numbered `start` on; its `count` is the next call's start."""
        ...
