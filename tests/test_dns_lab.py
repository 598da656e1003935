"""A lookup through a resolv.conf search domain, on the real kernel: a netns of its own whose
resolv.conf (`ip netns exec` mounts /etc/netns/NAME/resolv.conf) searches stlab.test with
ndots:1, and whose only DNS server, tests/dns_responder.py on its loopback, knows no name.
glibc asks the search-domain expansion first, then the bare name: the trace shows both as
NXDOMAIN, the bare name's verdict naming the expansion tried before it. SERVFAIL and an empty
answer get their own verdicts."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from dns_responder import responding
from faults import run, traced

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root: BPF and netns"),
    pytest.mark.skipif(not Path("/sys/kernel/btf/vmlinux").exists(), reason="kernel has no BTF"),
]

NETNS = "stlab-dns"
ETC = Path("/etc/netns") / NETNS
SEARCH, NOSUCH = "stlab.test", "nosuch"


@pytest.fixture
def resolver_netns() -> Iterator[str]:
    """The netns, its resolv.conf and its DNS server; all gone again afterwards."""
    made_etc = not ETC.parent.exists()
    run(["ip", "netns", "add", NETNS])
    try:
        run(["ip", "-n", NETNS, "link", "set", "lo", "up"])
        ETC.mkdir(parents=True, exist_ok=True)  # a guest of the VM lab sees the host's /etc
        (ETC / "resolv.conf").write_text(f"nameserver 127.0.0.1\nsearch {SEARCH}\n"
                                         "options ndots:1 attempts:1 timeout:2\n")
        with responding(["ip", "netns", "exec", NETNS]):
            yield NETNS
    finally:
        shutil.rmtree(ETC, ignore_errors=True)
        if made_etc:
            shutil.rmtree(ETC.parent, ignore_errors=True)
        run(["ip", "netns", "delete", NETNS], check=False)


def test_search_domain_expansion_then_the_bare_name(resolver_netns: str) -> None:
    with traced("--port", "53", "--timeout", "10") as requests:
        res = subprocess.run(["ip", "netns", "exec", resolver_netns, "getent", "ahosts",
                              NOSUCH], capture_output=True, text=True, timeout=20, check=False)
    assert res.returncode == 2, res  # getent: the key was not found
    asked = {r["dns"]["name"]: r for r in requests if r.get("dns")}
    bare, expansion = asked.get(NOSUCH), asked.get(f"{NOSUCH}.{SEARCH}")
    assert bare is not None and expansion is not None, [r.get("dns") for r in requests]
    for r in (bare, expansion):
        assert (r["status"], r["dns"]["rcode"]) == ("dns-failed", "NXDOMAIN"), r
        assert (r["verdict"]["hop"], r["verdict"]["cause"]) == ("dns", "dns-nxdomain"), r
    assert expansion["dns"]["tried"] == [] and expansion["start_ns"] < bare["start_ns"]
    assert bare["dns"]["tried"] == [{"id": expansion["id"], "name": f"{NOSUCH}.{SEARCH}",
                                     "rcode": "NXDOMAIN"}], bare
    assert f"the search-domain expansion {NOSUCH}.{SEARCH} answered NXDOMAIN before the " \
        f"bare name {NOSUCH} was tried" in bare["verdict"]["evidence"], bare["verdict"]


@pytest.mark.parametrize(("name", "rcode", "cause"), [("servfail", "SERVFAIL", "dns-servfail"),
                                                      ("empty", "NOERROR", "dns-empty")])
def test_servfail_and_empty_answers(resolver_netns: str, name: str, rcode: str,
                                    cause: str) -> None:
    with traced("--port", "53", "--timeout", "10") as requests:
        subprocess.run(["ip", "netns", "exec", resolver_netns, "getent", "ahosts", name],
                       capture_output=True, text=True, timeout=20, check=False)
    asked = [r for r in requests if r.get("dns")]
    assert asked, requests
    for r in asked:
        assert (r["status"], r["dns"]["rcode"], r["dns"]["addrs"]) == ("dns-failed", rcode, []), r
        assert (r["verdict"]["hop"], r["verdict"]["cause"]) == ("dns", cause), r
