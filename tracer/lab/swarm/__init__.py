"""The swarm lab: real dockerd(s), a real 2-node swarm, the article's services, on one machine.

    lab = up(nodes=2)                 # SwarmLab: nodes, services, ipvs, up_seconds, notes
    answers = traffic("dnsrr", 10)    # [Answer(ok, container, text, client)]
    down()                            # the machine as it was; returns problems (none)
"""

from tracer.lab.swarm.lab import SwarmLab, down, load, traffic, up
from tracer.lab.swarm.layout import LabNode
from tracer.lab.swarm.services import MODE_SERVICE, Answer

__all__ = ["MODE_SERVICE", "Answer", "LabNode", "SwarmLab", "down", "load", "traffic", "up"]
