"""The lab: netns shaped like a Swarm node's routing mesh and VIP, built without Docker.

`up()`, `down()`, `status()`, `traffic()` and `flood()` are what the CLI, the tests and the
scripts use; all need root.
"""

from tracer.lab.balancer import has_ipvs
from tracer.lab.netns_lab import LabInfo, LabNetns, down, status, up
from tracer.lab.rules import rule_packets
from tracer.lab.topology import LAB_PREFIX, MESH_TARGET, VIP_TARGET, short_name
from tracer.lab.traffic import Answer, flood, iter_traffic, traffic

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
