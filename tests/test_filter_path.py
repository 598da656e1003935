"""The filter-table walk behind `check`'s FORWARD findings, on iptables-save text as Docker
writes it on a swarm node (copied from a real node's `iptables-save -t filter`)."""

from __future__ import annotations

from tracer.diagnose.filter_path import Packet, parse, walk

DOCKER_NODE = """*filter
:INPUT ACCEPT [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
:DOCKER - [0:0]
:DOCKER-INGRESS - [0:0]
:DOCKER-ISOLATION-STAGE-1 - [0:0]
:DOCKER-ISOLATION-STAGE-2 - [0:0]
:DOCKER-USER - [0:0]
-A FORWARD -j DOCKER-USER
-A FORWARD -j DOCKER-INGRESS
-A FORWARD -j DOCKER-ISOLATION-STAGE-1
-A FORWARD -o docker0 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A FORWARD -o docker0 -j DOCKER
-A FORWARD -i docker0 ! -o docker0 -j ACCEPT
-A FORWARD -i docker0 -o docker0 -j ACCEPT
-A FORWARD -o docker_gwbridge -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A FORWARD -o docker_gwbridge -j DOCKER
-A FORWARD -i docker_gwbridge ! -o docker_gwbridge -j ACCEPT
-A FORWARD -i docker_gwbridge -o docker_gwbridge -j DROP
-A DOCKER-INGRESS -p tcp -m tcp --dport 8080 -j ACCEPT
-A DOCKER-INGRESS -p tcp -m state --state RELATED,ESTABLISHED -m tcp --sport 8080 -j ACCEPT
-A DOCKER-INGRESS -j RETURN
-A DOCKER-ISOLATION-STAGE-1 -i docker0 ! -o docker0 -j DOCKER-ISOLATION-STAGE-2
-A DOCKER-ISOLATION-STAGE-1 -i docker_gwbridge ! -o docker_gwbridge -j DOCKER-ISOLATION-STAGE-2
-A DOCKER-ISOLATION-STAGE-1 -j RETURN
-A DOCKER-ISOLATION-STAGE-2 -o docker0 -j DROP
-A DOCKER-ISOLATION-STAGE-2 -o docker_gwbridge -j DROP
-A DOCKER-ISOLATION-STAGE-2 -j RETURN
-A DOCKER-USER -j RETURN
COMMIT
"""
TO_SBOX = Packet("tcp", dport=8080, dst="172.18.0.2", out_iface="docker_gwbridge")
REPLY = Packet("tcp", sport=8080, ctstate="ESTABLISHED")


def test_docker_accepts_its_published_port_both_ways() -> None:
    table = parse(DOCKER_NODE)
    for pkt in (TO_SBOX, REPLY):
        out = walk(table, "FORWARD", pkt)
        assert out.accepted and not out.may_drop, out
    assert walk(table, "FORWARD", TO_SBOX).by.startswith("-A DOCKER-INGRESS -p tcp")


def test_unpublished_port_falls_to_the_policy() -> None:
    out = walk(parse(DOCKER_NODE), "FORWARD", Packet("tcp", dport=9090, dst="172.18.0.2",
                                                     out_iface="docker_gwbridge"))
    assert (out.accepted, out.by) == (False, "policy DROP")


def test_a_docker_user_drop_is_named() -> None:
    rule = "-A DOCKER-USER -p tcp -m tcp --dport 8080 -j DROP"
    text = DOCKER_NODE.replace("-A DOCKER-USER -j RETURN", rule + "\n-A DOCKER-USER -j RETURN")
    out = walk(parse(text), "FORWARD", TO_SBOX)
    assert (out.accepted, out.by) == (False, rule)


def test_a_drop_for_some_clients_is_a_may_drop() -> None:
    rule = "-A DOCKER-USER -s 203.0.113.0/24 -j DROP"
    text = DOCKER_NODE.replace("-A DOCKER-USER -j RETURN", rule + "\n-A DOCKER-USER -j RETURN")
    out = walk(parse(text), "FORWARD", TO_SBOX)
    assert out.accepted and out.may_drop == (rule,)


def test_negations_and_ranges() -> None:
    text = ("*filter\n:FORWARD ACCEPT [0:0]\n"
            "-A FORWARD -p tcp ! --dport 8000:8100 -j DROP\n"
            "-A FORWARD ! -p udp -m multiport --dports 22,8080 -j REJECT\nCOMMIT\n")
    out = walk(parse(text), "FORWARD", TO_SBOX)
    assert (out.accepted, out.by) == (False, "-A FORWARD ! -p udp -m multiport --dports "
                                             "22,8080 -j REJECT")
