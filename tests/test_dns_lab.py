"""A lookup through a resolv.conf search domain, on the real kernel: a netns of its own whose
resolv.conf (`ip netns exec` mounts /etc/netns/NAME/resolv.conf) searches stlab.test with
ndots:1, and whose only DNS server, tests/dns_responder.py on its loopback, knows one name
(`known`). glibc asks the search-domain expansion first, then the bare name: a name it knows
is found after the expansion failed, a search step and no failure; for a name it does not know,
the bare name's NXDOMAIN is the lookup's failure, its verdict naming the expansion tried before
it. SERVFAIL and an empty answer get their own verdicts."""

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
SEARCH, NOSUCH, KNOWN = "stlab.test", "nosuch", "known"


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
    # The expansion was a step of the lookup; the bare name's NXDOMAIN is its failure.
    assert (expansion["status"], expansion["dns"]["rcode"]) == ("dns-search", "NXDOMAIN")
    assert "verdict" not in expansion, expansion
    assert (bare["status"], bare["dns"]["rcode"]) == ("dns-failed", "NXDOMAIN"), bare
    assert (bare["verdict"]["hop"], bare["verdict"]["cause"]) == ("dns", "dns-nxdomain"), bare
    assert expansion["dns"]["tried"] == [] and expansion["start_ns"] < bare["start_ns"]
    assert bare["dns"]["tried"] == [{"id": expansion["id"], "name": f"{NOSUCH}.{SEARCH}",
                                     "rcode": "NXDOMAIN"}], bare
    assert f"the search-domain expansion {NOSUCH}.{SEARCH} answered NXDOMAIN before the " \
        f"bare name {NOSUCH} was tried" in bare["verdict"]["evidence"], bare["verdict"]


def test_search_domain_expansion_then_the_name_answered(resolver_netns: str) -> None:
    """The false alarm users of a host with a `search` line met on every lookup of a service:
    the expansion's NXDOMAIN is a step of a lookup that found its address."""
    with traced("--port", "53", "--timeout", "10") as requests:
        res = subprocess.run(["ip", "netns", "exec", resolver_netns, "getent", "ahosts",
                              KNOWN], capture_output=True, text=True, timeout=20, check=False)
    assert res.returncode == 0 and "127.0.0.1" in res.stdout, res
    asked = {r["dns"]["name"]: r for r in requests if r.get("dns")}
    bare, expansion = asked.get(KNOWN), asked.get(f"{KNOWN}.{SEARCH}")
    assert bare is not None and expansion is not None, [r.get("dns") for r in requests]
    assert (expansion["status"], expansion["dns"]["rcode"]) == ("dns-search", "NXDOMAIN")
    assert (bare["status"], bare["dns"]["addrs"]) == ("ok", ["127.0.0.1"]), bare
    assert not [r for r in requests if "verdict" in r], requests
    assert bare["dns"]["tried"] == [{"id": expansion["id"], "name": f"{KNOWN}.{SEARCH}",
                                     "rcode": "NXDOMAIN"}], bare


@pytest.mark.parametrize(("name", "rcode", "cause"), [("servfail", "SERVFAIL", "dns-servfail"),
                                                      ("empty", "NOERROR", "dns-empty")])
def test_servfail_and_empty_answers(resolver_netns: str, name: str, rcode: str,
                                    cause: str) -> None:
    with traced("--port", "53", "--timeout", "10") as requests:
        subprocess.run(["ip", "netns", "exec", resolver_netns, "getent", "ahosts", name],
                       capture_output=True, text=True, timeout=20, check=False)
    asked = sorted((r for r in requests if r.get("dns")), key=lambda r: r["start_ns"])
    assert asked, requests
    # The last name the resolver tried is the lookup's failure; those before it its steps.
    *steps, last = asked
    for r in asked:
        assert (r["dns"]["rcode"], r["dns"]["addrs"]) == (rcode, []), r
    assert [(r["status"], r.get("verdict")) for r in steps] == [("dns-search", None)] * len(steps)
    assert last["status"] == "dns-failed", last
    assert (last["verdict"]["hop"], last["verdict"]["cause"]) == ("dns", cause), last
    assert [q["id"] for q in last["dns"]["tried"]] == [r["id"] for r in steps], last
