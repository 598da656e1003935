"""swarmtrace: trace Docker Swarm's service discovery and load balancing, request by request."""

__version__ = "0.1.0"
