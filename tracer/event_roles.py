"""What an event can do to the requests: start one, or nothing at all (then it is not even
decoded)."""

from __future__ import annotations

import numpy as np

from tracer.events import F_CT, TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN, Flow, Point

_TCP_STATE = TCP_SYN | TCP_FIN | TCP_RST
_ALWAYS_KEPT = np.array([Point.DROP, Point.LB], dtype=np.uint8)
_LB = Point.LB


def may_change_requests(records: np.ndarray) -> np.ndarray:
    """Which records to decode. A TCP segment without SYN, FIN or RST changes no request (a
    request's path, NAT and reply come from its SYN and SYN-ACK); drops and IPVS events count."""
    keep: np.ndarray = (records["proto"] != 6) | (records["tcp_flags"] & _TCP_STATE != 0) | \
        np.isin(records["point"], _ALWAYS_KEPT)
    return keep


def starts_connection(point: int, proto: int, tcp_flags: int, flags: int, ctinfo: int,
                      pkt: Flow) -> bool:
    if point == _LB:
        return True  # IPVS scheduling a local client's connection comes before any packet
    if proto == 6:
        return bool(tcp_flags & TCP_SYN) and not (tcp_flags & TCP_ACK)
    if pkt[1] == 53:  # the source port
        return False  # a DNS answer (a late one, after its query completed) starts nothing
    return not flags & F_CT or ctinfo == 2  # IP_CT_NEW
