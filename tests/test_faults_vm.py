"""The fault tests that need IPVS, run inside the stock-kernel VM lab (bcc backend there)."""

from __future__ import annotations

import pytest
from vm_fixtures import GuestRunner, vm_guest_fixture  # noqa: F401

pytestmark = pytest.mark.vm


def test_ipvs_faults_in_the_vm(vm_guest: GuestRunner) -> None:
    """The netns lab on IPVS: healthy, (a) a stale real server, (h) the idle timeout."""
    rc, out = vm_guest.run(["python", "-m", "pytest", "-q", "-p", "no:cacheprovider",
                            "tests/test_faults_lab.py", "-k", "healthy or stale or idle"],
                           timeout=900)
    assert rc == 0, out[-4000:]
    assert "3 passed" in out, out[-2000:]


def test_dns_verdicts_on_bcc_in_the_vm(vm_guest: GuestRunner) -> None:
    """The bcc backend (the guest's kernel is too old for the core one): a lookup's NXDOMAIN
    answers, a search-domain expansion before a name found and before one not found, SERVFAIL
    and an empty answer."""
    rc, out = vm_guest.run(["python", "-m", "pytest", "-q", "-p", "no:cacheprovider",
                            "tests/test_dns_lab.py"], timeout=900)
    assert rc == 0, out[-4000:]
    assert "4 passed" in out, out[-2000:]


def test_swarm_faults_on_bcc_in_the_vm(vm_guest: GuestRunner) -> None:
    """On one swarm lab in the guest (building one there takes minutes): check on Docker's own
    IPVS, MARK rules and DNAT, healthy, then a stale real server in ingress_sbox; (d) an
    underlay MTU below the overlay's, told by the VXLAN packet bcc saw dropped; a name Docker
    DNS does not know. The guest sees the host's /run: the host's swarm lab must be down
    (hold the lab lock too, after the VM lock)."""
    rc, out = vm_guest.run(["python", "-m", "pytest", "-q", "-p", "no:cacheprovider",
                            "tests/test_faults_swarm.py", "-k",
                            "healthy or stale or dns_name_that or underlay_mtu"], timeout=2700)
    assert rc == 0, out[-4000:]
    assert "4 passed" in out, out[-2000:]
