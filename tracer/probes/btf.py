"""Facts read from the running kernel's BTF: the names of its drop reasons.

enum skb_drop_reason changes between kernel versions, so a reason code only means something
with the table of the kernel that produced it; sources put that table in SourceInfo and
trace files keep it."""

from __future__ import annotations

import re
import subprocess

_ENUM = re.compile(r"enum skb_drop_reason \{(.*?)\};", re.S)
MAX_CORE_REASON = 1024
_MEMBER = re.compile(r"SKB_DROP_REASON_(\w+) = (\d+),")


def drop_reasons() -> tuple[str, ...]:
    """Reason names indexed by code; empty when BTF or bpftool is missing."""
    try:
        text = subprocess.run(
            ["bpftool", "btf", "dump", "file", "/sys/kernel/btf/vmlinux", "format", "c"],
            capture_output=True, text=True, check=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return ()
    m = _ENUM.search(text)
    if not m:
        return ()
    # Codes above the core range are subsystem masks (SKB_DROP_REASON_SUBSYS_*), not reasons.
    members = {int(code): name for name, code in _MEMBER.findall(m.group(1))
               if int(code) < MAX_CORE_REASON}
    return tuple(members.get(i, str(i)) for i in range(max(members, default=-1) + 1))
