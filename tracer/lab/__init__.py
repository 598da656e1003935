"""The lab: netns shaped like a Swarm node's routing mesh and VIP, built without Docker.

`up()`, `down()`, `status()`, `traffic()` and `flood()` are what the CLI, the tests and the
scripts use; all but status() need root.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tracer.lab.balancer import has_ipvs
    from tracer.lab.netns_lab import LabInfo, LabNetns, down, status, up
    from tracer.lab.rules import rule_packets
    from tracer.lab.send import Answer, flood, iter_traffic, traffic
    from tracer.lab.topology import LAB_PREFIX, MESH_TARGET, VIP_TARGET, short_name

# Imported on first use: the lab's own small programs (http_backend, http_client), started
# with `python -m` inside a netns for every server and every traffic run, must start fast.
_EXPORTS = {
    "has_ipvs": "tracer.lab.balancer",
    "LabInfo": "tracer.lab.netns_lab",
    "LabNetns": "tracer.lab.netns_lab",
    "down": "tracer.lab.netns_lab",
    "status": "tracer.lab.netns_lab",
    "up": "tracer.lab.netns_lab",
    "rule_packets": "tracer.lab.rules",
    "LAB_PREFIX": "tracer.lab.topology",
    "MESH_TARGET": "tracer.lab.topology",
    "VIP_TARGET": "tracer.lab.topology",
    "short_name": "tracer.lab.topology",
    "Answer": "tracer.lab.send",
    "flood": "tracer.lab.send",
    "iter_traffic": "tracer.lab.send",
    "traffic": "tracer.lab.send",
}

__all__ = [
    "LAB_PREFIX",
    "MESH_TARGET",
    "VIP_TARGET",
    "Answer",
    "LabInfo",
    "LabNetns",
    "down",
    "flood",
    "has_ipvs",
    "iter_traffic",
    "rule_packets",
    "short_name",
    "status",
    "traffic",
    "up",
]


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'tracer.lab' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
