"""Where requests go: text and JSON lines (text.py), trace files, pcapng, the TUI."""
