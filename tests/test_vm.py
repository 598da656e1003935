"""The stock-kernel VM lab: a real guest boots Debian's kernel, IPVS and BCC kprobes work inside,
and nothing of the guest is left afterwards."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from vm_fixtures import GuestRunner, vm_guest_fixture, vm_unavailable  # noqa: F401

from tracer.vm import Guest, VmConfig, find_kernel, in_guest
from tracer.vm.boot import venv_bin

pytestmark = pytest.mark.vm

# Counts tcp_v4_connect calls, then connects once to a listener on the guest's loopback.
BCC_KPROBE_SCRIPT = r"""
import socket
from bcc import BPF

bpf = BPF(text='''
BPF_ARRAY(calls, u64, 1);
int count_connect(void *ctx) {
    int zero = 0;
    calls.atomic_increment(zero);
    return 0;
}
''')
bpf.attach_kprobe(event="tcp_v4_connect", fn_name="count_connect")
server = socket.socket()
server.bind(("127.0.0.1", 0))
server.listen()
client = socket.create_connection(server.getsockname(), timeout=5)
client.close()
server.close()
print("connects", bpf["calls"][0].value)
bpf.cleanup()
"""


@pytest.mark.skipif(in_guest(), reason="already inside the VM guest: no nested VM")
@pytest.mark.skipif(bool(vm_unavailable()), reason=vm_unavailable() or "")
def test_guest_runs_stock_kernel_and_leaves_nothing() -> None:
    kernel = find_kernel()
    with Guest(VmConfig(memory="1G")) as guest:
        qemu_pid = guest.qemu_pid
        share = guest.share
        assert qemu_pid is not None and Path(f"/proc/{qemu_pid}").exists()

        rc, out = guest.run("uname -r", timeout=120)
        assert (rc, out.strip()) == (0, kernel.version)
        assert out.strip() != os.uname().release

        rc, out = guest.run("command -v python; echo err >&2; exit 3", timeout=120)
        assert rc == 3
        assert out.splitlines() == [str(venv_bin() / "python"), "err"]  # this venv first

        began = time.monotonic()
        rc, out = guest.run("echo begun; sleep 600", timeout=3)
        assert rc == 124, out
        assert "begun" in out
        assert time.monotonic() - began < 40  # the host's clock decides, not the guest's

        rc, _ = guest.run("true", timeout=120)  # the agent still serves after a timeout
        assert rc == 0
    assert not Path(f"/proc/{qemu_pid}").exists(), "qemu still running after stop()"
    assert not share.exists(), "shared directory left behind"


def test_ipvs_service_inside(vm_guest: GuestRunner) -> None:
    rc, out = vm_guest.run("ipvsadm -A -f 261 -s rr && ipvsadm -Ln", timeout=120)
    try:
        assert rc == 0, out
        assert "FWM  261 rr" in out
    finally:
        vm_guest.run("ipvsadm -D -f 261", timeout=120)
    rc, out = vm_guest.run("ipvsadm -Ln", timeout=120)
    assert rc == 0 and "FWM  261" not in out


def test_bcc_kprobe_inside(vm_guest: GuestRunner) -> None:
    rc, out = vm_guest.run(["python", "-c", BCC_KPROBE_SCRIPT], timeout=900)
    assert rc == 0, out
    counts = [int(line.split()[1]) for line in out.splitlines() if line.startswith("connects ")]
    assert counts and counts[0] >= 1, out
