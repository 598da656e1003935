"""--filter EXPR: libpcap compiles it; its accepting paths become kernel rules, or one line."""

from __future__ import annotations

import pytest

from tracer.errors import FilterError
from tracer.pcap_filter import Rule, compile_rules


def test_conjunction_is_one_rule() -> None:
    assert compile_rules("tcp and dst port 8080") == (Rule(proto=6, dport=8080),)
    assert compile_rules("tcp and dst port 8080 and src host 10.0.1.2") == (
        Rule(proto=6, saddr="10.0.1.2", dport=8080),)


def test_either_direction_is_two_rules() -> None:
    assert set(compile_rules("udp port 53")) == {Rule(proto=17, sport=53), Rule(proto=17, dport=53)}
    assert set(compile_rules("host 10.0.0.9")) == {Rule(saddr="10.0.0.9"), Rule(daddr="10.0.0.9")}


def test_disjunction() -> None:
    assert set(compile_rules("tcp dst port 8080 or udp dst port 53")) == {
        Rule(proto=6, dport=8080), Rule(proto=17, dport=53)}


@pytest.mark.parametrize("expr", ["not port 80", "tcp and dst port 8080 and not src port 5",
                                  "net 10.0.0.0/8", "portrange 80-90", "tcp[13] & 2 != 0",
                                  "greater 100"])
def test_what_rules_cannot_express_is_refused(expr: str) -> None:
    with pytest.raises(FilterError, match="cannot be applied in the kernel"):
        compile_rules(expr)


def test_bad_expression_gives_libpcaps_error_in_one_line() -> None:
    with pytest.raises(FilterError) as err:
        compile_rules("tcp and dst prot 8080")
    assert str(err.value) == "--filter 'tcp and dst prot 8080': unknown host 'prot'"
