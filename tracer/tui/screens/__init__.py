"""Screens of the swarmtrace TUI: requests, services, topology, talk."""
