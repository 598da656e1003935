"""Enter a netns in the calling thread only, for as long as a netlink socket takes to open;
or run a command there.

setns(CLONE_NEWNET) switches only the calling thread; a socket keeps the netns it was opened
in. No child process: pyroute2's netns= forks one, which inherits the CLI's signal handlers
and could create a missing netns. Commands (iptables-save, nft, ipvsadm) run under nsenter.
"""

from __future__ import annotations

import ctypes
import logging
import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

log = logging.getLogger(__name__)

RUN_TIMEOUT_S = 10.0

_CLONE_NEWNET = 0x40000000
_LIBC = ctypes.CDLL(None, use_errno=True)


def _setns(fd: int) -> None:
    if _LIBC.setns(fd, _CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


@contextmanager
def entered(netns: Path | None) -> Iterator[None]:
    """Run the body in netns (a netns file; None: stay). Raises OSError if it is gone."""
    if netns is None:
        yield
        return
    target = os.open(netns, os.O_RDONLY)
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        _setns(target)
        try:
            yield
        finally:
            _setns(own)
    finally:
        os.close(own)
        os.close(target)


def run_in(netns: Path, argv: list[str], stdin: str | None = None,
           timeout_s: float = RUN_TIMEOUT_S) -> subprocess.CompletedProcess[str] | None:
    """argv run inside netns (a netns file), its output captured; None when it could not
    start (no such program, the netns gone) or outlived timeout_s, which is logged."""
    try:
        return subprocess.run(["nsenter", f"--net={netns}", *argv], input=stdin,
                              capture_output=True, text=True, timeout=timeout_s, check=False)
    except (OSError, subprocess.TimeoutExpired) as err:
        log.debug("%s in %s: %s", " ".join(argv), netns, err)
        return None
