"""Two guests on one virtual Ethernet segment: QEMU's socket netdev over loopback.

The first guest's qemu listens on 127.0.0.1:PORT and the second's connects to it, so frames
between the guests never leave this machine. Each end has its own MAC: the guests find their
link NIC by it (its name depends on the PCI slot), and one MAC on both ends would break ARP.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

from tracer import slowdown
from tracer.errors import LabError
from tracer.vm.boot import VmConfig
from tracer.vm.guest import Guest

LISTEN_TIMEOUT_S = 60.0  # vng builds its initramfs before qemu starts: seconds, more if loaded
_TCP_LISTEN = "0A"  # /proc/net/tcp state


@dataclass(frozen=True)
class L2Link:
    """A link between two guests; end 0 listens, end 1 connects."""

    port: int

    def mac(self, end: int) -> str:
        return f"52:54:00:5f:00:{end + 1:02x}"

    def qemu_opts(self, end: int) -> tuple[str, ...]:
        how = "listen" if end == 0 else "connect"
        return ("-netdev", f"socket,id=link0,{how}=127.0.0.1:{self.port}",
                "-device", f"virtio-net-pci,netdev=link0,mac={self.mac(end)}")

    def listening(self) -> bool:
        """Whether end 0's qemu accepts connections yet (end 1's qemu exits if not)."""
        want = f"0100007F:{self.port:04X}"
        try:
            rows = Path("/proc/net/tcp").read_text().splitlines()[1:]
        except OSError:
            return False
        return any(r.split()[1] == want and r.split()[3] == _TCP_LISTEN for r in rows)


def free_loopback_port() -> int:
    """A port nothing uses on 127.0.0.1 now (the kernel's pick), for the link's listener."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextmanager
def linked_guests(config: VmConfig, progress: Callable[[str], None]
                  ) -> Iterator[tuple[Guest, Guest, L2Link]]:
    """Two guests booted side by side on one link; both stopped on the way out (on failure and
    Ctrl-C too). Each guest's progress lines are prefixed with its end (A listens, B connects).
    """
    link = L2Link(free_loopback_port())

    def guest(end: int) -> Guest:
        name = "AB"[end]
        return Guest(replace(config, qemu_opts=(*config.qemu_opts, *link.qemu_opts(end))),
                     progress=lambda msg: progress(f"{name}: {msg}"))

    a, b = guests = (guest(0), guest(1))
    try:
        a.launch()
        limit = LISTEN_TIMEOUT_S * slowdown.host_load()
        deadline = time.monotonic() + limit
        while not link.listening():
            if not a.alive():
                a.wait_ready()  # raises with the console's last lines
            if time.monotonic() > deadline:
                raise LabError(f"guest A's qemu did not listen on 127.0.0.1:{link.port} within "
                               f"{limit:.0f} s")
            time.sleep(0.2)
        b.launch()
        for g in guests:
            g.wait_ready()
        yield a, b, link
    finally:
        try:
            a.stop()
        finally:
            b.stop()
