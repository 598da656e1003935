"""A DNS server that knows one name: the single label `known`, whose A question it answers
with 127.0.0.1 (the resolver's search ends there: a name of Swarm's, such as a service, has no
dot). Every other query gets NXDOMAIN, except names whose first label asks for another answer
(`servfail.*`: SERVFAIL, `empty.*`: NOERROR without a record). The DNS
tests run it on a loopback address inside a netns of their own (`nsenter --net=... python
dns_responder.py ADDR`), as the resolver a task's Docker DNS forwards unknown names to: no
query leaves the lab. Prints "ready" once it listens; runs until killed."""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

QR, RA, NXDOMAIN = 0x8000, 0x0080, 3
RCODES = {b"servfail": 2, b"empty": 0}  # by the name's first label
KNOWN = b"\x05known\x00"  # the name answered, as labels on the wire
TYPE_A, TTL = 1, 60


def answer(query: bytes) -> bytes | None:
    """The response to query (same id, its question): NXDOMAIN without records, or as the
    module says."""
    if len(query) < 12:
        return None
    flags = int.from_bytes(query[2:4], "big")
    if flags & QR:
        return None
    end = 12
    while end < len(query) and query[end]:
        end += 1 + query[end]
    end += 5  # the zero byte, qtype, qclass; anything after (EDNS) is not answered
    opcode_rd = flags & 0x7900  # opcode and RD, as asked
    question = query[12:end]
    if question[:-4] == KNOWN:
        # Its A question gets the address (a record pointing back at the question's name);
        # AAAA an empty NOERROR, as Docker DNS answers it for a service.
        qtype = int.from_bytes(question[-4:-2], "big")
        head = query[:2] + (QR | opcode_rd | RA).to_bytes(2, "big") + (1).to_bytes(2, "big")
        if qtype != TYPE_A:
            return head + bytes(6) + question
        record = b"\xc0\x0c" + question[-4:] + TTL.to_bytes(4, "big") + (4).to_bytes(2, "big")
        return head + (1).to_bytes(2, "big") + bytes(4) + question + record + bytes([127, 0, 0, 1])
    rcode = RCODES.get(query[13:13 + query[12]], NXDOMAIN) if len(query) > 12 else NXDOMAIN
    head = query[:2] + (QR | opcode_rd | RA | rcode).to_bytes(2, "big")
    return head + (1).to_bytes(2, "big") + bytes(6) + question


@contextmanager
def responding(enter: list[str], addr: str = "127.0.0.1") -> Iterator[None]:
    """This server on addr for the block, started under enter: a command that runs its
    arguments inside the netns (`nsenter --net=PATH`, `ip netns exec NAME`)."""
    proc = subprocess.Popen([*enter, sys.executable, __file__, addr], stdout=subprocess.PIPE,
                            text=True)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready", "the DNS responder did not start"
        yield
    finally:
        proc.kill()
        proc.wait()


def main() -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((sys.argv[1], 53))
    print("ready", flush=True)
    while True:
        query, peer = sock.recvfrom(4096)
        reply = answer(query)
        if reply is not None:
            sock.sendto(reply, peer)


if __name__ == "__main__":
    main()
