"""Widgets of the swarmtrace TUI."""
