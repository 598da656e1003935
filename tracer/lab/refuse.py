"""A lab backend that refuses: every connection to it gets a RST, as when a task's server died
behind a healthy-looking IPVS entry. Used to make failures that the ring recorder must keep."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from contextlib import contextmanager

_RULE = ["INPUT", "-p", "tcp", "--dport", "80", "-j", "REJECT", "--reject-with", "tcp-reset"]


@contextmanager
def refusing(netns: str) -> Iterator[None]:
    """Refuse TCP port 80 in `netns` while the block runs; the rule is removed on any exit."""
    subprocess.run(["ip", "netns", "exec", netns, "iptables", "-I", *_RULE], check=True)
    try:
        yield
    finally:
        subprocess.run(["ip", "netns", "exec", netns, "iptables", "-D", *_RULE], check=False)
