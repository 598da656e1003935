"""pcap-filter expressions (`--filter 'tcp and dst port 8080'`) as rules the kernel applies.

libpcap compiles the expression (its grammar, its error messages) into classic BPF for a raw
IPv4 packet. Every path through that program that accepts a packet is a conjunction of
protocol, address and port tests; each becomes one rule. The kernel matches the rules where
it first sees a flow and then follows the flow through NAT, as it does for --port."""

from __future__ import annotations

import ctypes
import ctypes.util
import socket
from dataclasses import dataclass, field

from tracer.errors import FilterError

DLT_RAW = 12  # packets start at the IP header
PCAP_NETMASK_UNKNOWN = 0xFFFFFFFF
MAX_RULES = 16  # entries of st_rules in bpf/core.bpf.c
MAX_PATHS = 256

FIELDS = ("proto", "saddr", "daddr", "sport", "dport")


@dataclass(frozen=True)
class Rule:
    """Packets whose every given field equals its value (0 / "": any)."""

    proto: int = 0
    saddr: str = ""
    daddr: str = ""
    sport: int = 0
    dport: int = 0


class _Insn(ctypes.Structure):
    _fields_ = [("code", ctypes.c_ushort), ("jt", ctypes.c_ubyte), ("jf", ctypes.c_ubyte),
                ("k", ctypes.c_uint)]


class _Program(ctypes.Structure):
    _fields_ = [("bf_len", ctypes.c_uint), ("bf_insns", ctypes.POINTER(_Insn))]


def _libpcap() -> ctypes.CDLL:
    name = ctypes.util.find_library("pcap") or "libpcap.so.0.8"
    try:
        lib = ctypes.CDLL(name)
    except OSError as err:
        raise FilterError(f"--filter needs libpcap ({err}): run scripts/setup") from err
    lib.pcap_open_dead.restype = ctypes.c_void_p
    lib.pcap_open_dead.argtypes = [ctypes.c_int, ctypes.c_int]
    lib.pcap_compile.argtypes = [ctypes.c_void_p, ctypes.POINTER(_Program), ctypes.c_char_p,
                                 ctypes.c_int, ctypes.c_uint32]
    lib.pcap_geterr.restype = ctypes.c_char_p
    lib.pcap_geterr.argtypes = [ctypes.c_void_p]
    lib.pcap_freecode.argtypes = [ctypes.POINTER(_Program)]
    lib.pcap_close.argtypes = [ctypes.c_void_p]
    return lib


def compile_cbpf(expr: str) -> list[tuple[int, int, int, int]]:
    """The expression as classic BPF (code, jt, jf, k) for raw IPv4, or libpcap's error."""
    lib = _libpcap()
    handle = lib.pcap_open_dead(DLT_RAW, 65535)
    if not handle:
        raise FilterError("--filter: libpcap could not open a capture handle")
    try:
        prog = _Program()
        if lib.pcap_compile(handle, ctypes.byref(prog), expr.encode(), 1,
                            PCAP_NETMASK_UNKNOWN) != 0:
            err = (lib.pcap_geterr(handle) or b"").decode(errors="replace")
            raise FilterError(f"--filter {expr!r}: {err}")
        try:
            return [(i.code, i.jt, i.jf, i.k) for i in prog.bf_insns[: prog.bf_len]]
        finally:
            lib.pcap_freecode(ctypes.byref(prog))
    finally:
        lib.pcap_close(handle)


@dataclass(frozen=True)
class _Sym:
    """An unknown packet field (value as loaded: network order, big-endian)."""

    name: str


_Value = int | _Sym

# The packet the program is run on: an IPv4 header without options, not a fragment, then the
# ports. Only these loads are understood; anything else cannot be a kernel rule.
_IHL_BYTE = 0x45
_LOADS: dict[tuple[int, int], _Value] = {  # (offset, size) -> value
    (0, 1): _IHL_BYTE,
    (6, 2): 0,  # flags and fragment offset: the first (or only) fragment
    (9, 1): _Sym("proto"),
    (12, 4): _Sym("saddr"),
    (16, 4): _Sym("daddr"),
    (20, 2): _Sym("sport"),
    (22, 2): _Sym("dport"),
}


@dataclass
class _Path:
    pc: int = 0
    a: _Value = 0
    x: _Value = 0
    mem: dict[int, _Value] = field(default_factory=dict)
    eq: dict[str, int] = field(default_factory=dict)
    ne: set[tuple[str, int]] = field(default_factory=set)

    def fork(self, pc: int) -> _Path:
        return _Path(pc, self.a, self.x, dict(self.mem), dict(self.eq), set(self.ne))


def _unsupported(expr: str, what: str) -> FilterError:
    return FilterError(f"--filter {expr!r}: {what} cannot be applied in the kernel; use "
                       "protocol, host and port tests joined by and/or")


def _load(expr: str, off: int, size: int) -> _Value:
    v = _LOADS.get((off, size))
    if v is None:
        raise _unsupported(expr, f"a test of packet bytes {off}..{off + size - 1}")
    return v


def _paths(expr: str, prog: list[tuple[int, int, int, int]],
           given: dict[str, int]) -> tuple[list[_Path], list[_Path]]:
    """Run the program on every packet whose fields equal `given` at once, branching where
    another field is tested: the paths that accept, and those that reject."""
    done: list[_Path] = []
    rejected: list[_Path] = []
    todo = [_Path(eq=dict(given))]
    while todo:
        if len(done) + len(rejected) + len(todo) > MAX_PATHS:
            raise _unsupported(expr, "an expression this large")
        p = todo.pop()
        while True:
            code, jt, jf, k = prog[p.pc]
            cls, size = code & 0x07, {0x00: 4, 0x08: 2, 0x10: 1}.get(code & 0x18, 0)
            mode = code & 0xE0
            if cls == 0x00:  # LD
                if mode == 0x00:
                    p.a = k
                elif mode == 0x20:
                    p.a = _load(expr, k, size)
                elif mode == 0x40 and isinstance(p.x, int):
                    p.a = _load(expr, p.x + k, size)
                elif mode == 0x60:
                    p.a = p.mem.get(k, 0)
                else:
                    raise _unsupported(expr, "a test of the packet length")
            elif cls == 0x01:  # LDX
                if mode == 0x00:
                    p.x = k
                elif mode == 0x60:
                    p.x = p.mem.get(k, 0)
                elif mode == 0xA0 and _load(expr, k, 1) == _IHL_BYTE:
                    p.x = (_IHL_BYTE & 0x0F) * 4
                else:
                    raise _unsupported(expr, "this header test")
            elif cls == 0x02:  # ST
                p.mem[k] = p.a
            elif cls == 0x03:  # STX
                p.mem[k] = p.x
            elif cls == 0x04:  # ALU
                p.a = _alu(expr, code, p.a, k if code & 0x08 == 0 else p.x)
            elif cls == 0x05:  # JMP
                op = code & 0xF0
                if op == 0x00:
                    p.pc += 1 + k
                    continue
                operand = k if code & 0x08 == 0 else p.x
                if isinstance(p.a, int) and isinstance(operand, int):
                    taken = {0x10: p.a == operand, 0x20: p.a > operand,
                             0x30: p.a >= operand, 0x40: bool(p.a & operand)}[op]
                    p.pc += 1 + (jt if taken else jf)
                    continue
                if op != 0x10 or not isinstance(p.a, _Sym) or not isinstance(operand, int):
                    raise _unsupported(expr, "a range or bit test")
                name = p.a.name
                known = p.eq.get(name)
                can_eq = (known is None or known == operand) and (name, operand) not in p.ne
                can_ne = known != operand
                if can_eq and can_ne:
                    other = p.fork(p.pc + 1 + jf)
                    other.ne.add((name, operand))
                    todo.append(other)
                if can_eq:
                    p.eq[name] = operand
                    p.pc += 1 + jt
                else:
                    p.ne.add((name, operand))
                    p.pc += 1 + jf
                continue
            elif cls == 0x06:  # RET
                if code & 0x18 != 0x00:
                    raise _unsupported(expr, "a computed verdict")
                (done if k else rejected).append(p)
                break
            elif cls == 0x07:  # MISC: TAX / TXA
                if code & 0xF8 == 0x00:
                    p.x = p.a
                else:
                    p.a = p.x
            p.pc += 1
    return done, rejected


def _alu(expr: str, code: int, a: _Value, b: _Value) -> int:
    if not isinstance(a, int) or not isinstance(b, int):
        raise _unsupported(expr, "a masked address (net) or computed field")
    op = code & 0xF0
    ops = {0x00: a + b, 0x10: a - b, 0x20: a * b, 0x40: a | b, 0x50: a & b,
           0x60: a << b, 0x70: a >> b, 0x80: -a, 0xA0: a ^ b}
    if op in (0x30, 0x90):
        if not b:
            raise _unsupported(expr, "a division by zero")
        return (a // b if op == 0x30 else a % b) & 0xFFFFFFFF
    return ops[op] & 0xFFFFFFFF


def _rule(eq: dict[str, int]) -> Rule:
    def ip(v: int) -> str:
        return socket.inet_ntoa(v.to_bytes(4, "big"))

    return Rule(proto=eq.get("proto", 0), saddr=ip(eq["saddr"]) if "saddr" in eq else "",
                daddr=ip(eq["daddr"]) if "daddr" in eq else "", sport=eq.get("sport", 0),
                dport=eq.get("dport", 0))


def compile_rules(expr: str) -> tuple[Rule, ...]:
    """The rules whose union is exactly what `expr` accepts (libpcap's error if it is not
    an expression; FilterError if it is one the kernel rules cannot express)."""
    prog = compile_cbpf(expr)
    paths = _paths(expr, prog, {})[0]
    if not paths:
        raise FilterError(f"--filter {expr!r} matches no IPv4 packet")
    # A path accepts its equalities AND NOT (field == v) for each v in ne. The rule leaves the
    # NOT out: exact only if the program accepts every packet with field == v as well ("port
    # 80": dst port 80 is tried after src port 80 failed), not for "not port 80".
    for p in paths:
        for name, v in p.ne:
            if name in p.eq:
                continue  # already another value: no packet of this path has field == v
            if _paths(expr, prog, {**p.eq, name: v})[1]:
                raise _unsupported(expr, f"a negation ({name} other than {v})")
    eqs = [p.eq for p in paths]
    rules = tuple(dict.fromkeys(_rule(e) for e in eqs))
    if len(rules) > MAX_RULES:
        raise _unsupported(expr, f"more than {MAX_RULES} alternatives")
    return rules
