"""Probe backends: live EventSources fed by kernel programs (core: CO-RE, bcc: kprobes)."""

from pathlib import Path

# The kernel programs' sources (event.h, core.bpf.c, bcc_probes.c); scripts/setup builds the
# CO-RE object into BPF_DIR / "build".
BPF_DIR = Path(__file__).resolve().parents[2] / "bpf"
