"""Tracing a multi-host swarm: an agent per node streams its kernel's events; a collector
merges them into one EventSource with the nodes' clocks aligned."""
