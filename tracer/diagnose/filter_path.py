"""Would the filter table let a packet through? iptables-save text, walked for one packet.

The packet is known only in part (the published port, the sandbox it is DNATed to, the
bridge it leaves by; not the client): a rule that depends on what is not known "may match".
A DROP that may match is reported; an ACCEPT that may match does not count as accepting."""

from __future__ import annotations

import ipaddress
import shlex
from dataclasses import dataclass, field

_BUILTIN = ("INPUT", "FORWARD", "OUTPUT")
_TERMINAL_DROP = ("DROP", "REJECT")


@dataclass(frozen=True)
class Packet:
    proto: str
    dport: int | None = None
    sport: int | None = None
    dst: str | None = None
    out_iface: str | None = None
    ctstate: str = "NEW"  # the first packet of a connection; replies are ESTABLISHED


@dataclass(frozen=True)
class Rule:
    chain: str
    text: str  # "-A DOCKER-USER -p tcp -m tcp --dport 8080 -j DROP"
    args: tuple[str, ...]
    target: str


@dataclass
class Table:
    policies: dict[str, str] = field(default_factory=dict)
    rules: dict[str, list[Rule]] = field(default_factory=dict)


def parse(iptables_save: str) -> Table:
    t = Table()
    for line in iptables_save.splitlines():
        if line.startswith(":"):
            name, policy = line[1:].split()[:2]
            t.policies[name] = policy
            t.rules.setdefault(name, [])
        elif line.startswith("-A "):
            args = tuple(shlex.split(line))
            target = ""
            for flag in ("-j", "-g"):
                if flag in args and args.index(flag) + 1 < len(args):
                    target = args[args.index(flag) + 1]
            t.rules.setdefault(args[1], []).append(Rule(args[1], line, args[2:], target))
    return t


@dataclass(frozen=True)
class Outcome:
    accepted: bool
    by: str  # the rule that decided, or "policy DROP"/"policy ACCEPT"
    may_drop: tuple[str, ...] = ()  # DROP/REJECT rules that match some clients of this packet


def walk(table: Table, chain: str, pkt: Packet) -> Outcome:
    """Where a packet entering built-in `chain` ends: accepted or dropped, and by what."""
    may_drop: list[str] = []
    decided = _walk(table, chain, pkt, may_drop, depth=0)
    if decided is None:
        policy = table.policies.get(chain, "ACCEPT")
        decided = (policy not in _TERMINAL_DROP, f"policy {policy}")
    return Outcome(decided[0], decided[1], tuple(may_drop))


def _walk(table: Table, chain: str, pkt: Packet, may_drop: list[str],
          depth: int) -> tuple[bool, str] | None:
    if depth > 16:  # a loop of jumps: iptables refuses those, but do not trust the input
        return None
    for rule in table.rules.get(chain, []):
        m = _matches(rule.args, pkt)
        if m is False:
            continue
        if rule.target == "ACCEPT":
            if m:
                return True, rule.text
        elif rule.target in _TERMINAL_DROP:
            if m:
                return False, rule.text
            may_drop.append(rule.text)
        elif rule.target == "RETURN":
            if m:
                return None
        elif rule.target in table.rules and rule.target not in _BUILTIN:
            decided = _walk(table, rule.target, pkt, may_drop, depth + 1)
            if decided is not None and (m or not decided[0]):
                if m:
                    return decided
                may_drop.append(decided[1])
    return None


def _matches(args: tuple[str, ...], pkt: Packet) -> bool | None:
    """True/False when the rule's matches decide for this packet, None when they depend on
    what is not known about it."""
    result: bool | None = True
    i = 0
    negate = False
    while i < len(args):
        a = args[i]
        if a == "!":
            negate = True
            i += 1
            continue
        val = args[i + 1] if i + 1 < len(args) else ""
        m: bool | None
        skip = 2
        if a in ("-j", "-g"):
            break
        if a == "-m":
            m = True  # a module name; its options follow
        elif a == "-p":
            m = val == pkt.proto
        elif a == "--dport":
            m = _port_in(pkt.dport, val)
        elif a == "--sport":
            m = _port_in(pkt.sport, val)
        elif a == "--dports":
            m = _any_port(pkt.dport, val)
        elif a == "-d":
            m = _addr_in(pkt.dst, val)
        elif a == "-o":
            m = None if pkt.out_iface is None else _iface(pkt.out_iface, val)
        elif a in ("--ctstate", "--state"):
            m = pkt.ctstate in val.split(",")
        elif a == "--comment":
            m = True
        else:
            m = None  # -s, -i, addrtype, and anything else: not known for this packet
            # Options without a value are flags; the rest take one.
            skip = 1 if i + 1 >= len(args) or args[i + 1].startswith("-") else 2
        if m is not None and negate:
            m = not m
        negate = False
        if m is False:
            return False
        if m is None:
            result = None
        i += skip
    return result


def _port_in(port: int | None, spec: str) -> bool | None:
    if port is None:
        return None
    lo, _, hi = spec.partition(":")
    return int(lo or 0) <= port <= int(hi or lo or 65535)


def _any_port(port: int | None, spec: str) -> bool | None:
    if port is None:
        return None
    return any(_port_in(port, p) for p in spec.split(","))


def _addr_in(addr: str | None, spec: str) -> bool | None:
    if addr is None:
        return None
    try:
        return ipaddress.ip_address(addr) in ipaddress.ip_network(spec, strict=False)
    except ValueError:
        return None


def _iface(name: str, spec: str) -> bool:
    return name.startswith(spec[:-1]) if spec.endswith("+") else name == spec
