"""Pairs what the tracers reported with what the lab and IPVS itself recorded.

Input is the JSON printed by scripts/check_ipvs_backends.py (run inside the stock-kernel VM).
"""

from __future__ import annotations

import re
from typing import Any

Json = dict[str, Any]


def requests(result: Json, backend: str, modes: tuple[str, ...]) -> list[Json]:
    """The backend's traced requests in `modes`, oldest first."""
    reqs = [q for q in result["traced"][backend]["requests"] if q["mode"] in modes]
    return sorted(reqs, key=lambda q: q["start_ns"])


def pairs(result: Json, backend: str, modes: tuple[str, ...]) -> list[tuple[Json, Json]]:
    """(answer, traced request) for every request sent in `modes`.

    Requests sent from our own socket pair by client address; requests sent from inside a
    container (swarm VIP) pair in the order sent, since they went one after another.
    """
    traced = requests(result, backend, modes)
    by_client = {q["client"]: q for q in traced}
    answers = [a for a in result["answers"] if a["mode"] in modes]
    assert len(traced) == len(answers), (
        f"{backend} traced {len(traced)} requests for {len(answers)} sent in {modes}: "
        f"{[q['client'] + ' -> ' + q['entry'] for q in traced]}; "
        f"notes: {result['traced'][backend]['notes']}")
    unpaired = iter(q for q in traced if q["client"] not in {a["client"] for a in answers})
    return [(a, by_client[a["client"]] if a["client"] else next(unpaired)) for a in answers]


def chosen(request: Json) -> str:
    """The real server of the request's load-balancing hop, "ip:port"."""
    lb = [h for h in request["hops"] if h["kind"] == "lb"]
    assert len(lb) == 1, request
    return str(lb[0]["after"].split(" -> ")[1])


def ipvs_record(result: Json, client: str) -> str:
    """IPVS's own real server for a client. IPVS keys by the client as it saw it: the host's
    MASQUERADE may have changed the address on the way, never the port."""
    if client in result["ipvs"]:
        return str(result["ipvs"][client])
    port = client.rsplit(":", 1)[1]
    found = {srv for c, srv in result["ipvs"].items() if c.rsplit(":", 1)[1] == port}
    assert len(found) == 1, f"IPVS has {found or 'no entry'} for client port {port}"
    return found.pop()


def check_swarm_request(result: Json, answer: Json, traced: Json) -> None:
    """A swarm mesh/VIP request: IPVS's choice, the task that answered, named by Docker."""
    assert traced["mode"] == answer["mode"]
    assert traced["service"] == "vote-vip"
    assert chosen(traced) == ipvs_record(result, traced["client"])
    # Named as Docker names the task that answered: "<task>.<id prefix> on <node>".
    task, node = result["tasks"][answer["backend"]]
    label, _, on = traced["backend"]["name"].partition(" on ")
    assert task.startswith(label) and on == node, (traced["backend"], task, node)


def check_ipvs_decision(request: Json) -> None:
    """The load-balancing hop is IPVS's own decision (bcc reads it in ip_vs_conn_new)."""
    lb = next(h for h in request["hops"] if h["kind"] == "lb")
    assert lb["detail"] == f"IPVS fwmark {int(lb['mark'], 16)} rr", lb


def check_crossing(request: Json, entry: str, served: str) -> Json | None:
    """A request joined across nodes: hop times never run backwards (clocks aligned), it
    starts on `entry` and is delivered on `served`, and crosses once if those differ, every
    hop after the crossing on `served` (the reply aside). Returns the VXLAN hop, if any."""
    hops = request["hops"]
    times = [h["t_us"] for h in hops]
    assert times == sorted(times), hops
    deliver = [h for h in hops if h["kind"] == "deliver"]
    assert hops[0]["node"] == entry and deliver and deliver[0]["node"] == served, hops
    vx = [h for h in hops if h["kind"] == "vxlan"]
    if entry == served:
        assert not vx, hops
        return None
    assert len(vx) == 1, hops
    after = {h.get("node") for h in hops[hops.index(vx[0]) + 1:] if h["kind"] != "reply"}
    assert after == {served}, hops
    return vx[0]


def check_swarm_path(answer: Json, traced: Json, observed: bool = False) -> None:
    """The hops a user expects, in order, each in the right netns. observed: the tracer read
    the VXLAN packets themselves (event layout 2), so a crossing shows what it saw."""
    kinds = [h["kind"] for h in traced["hops"]]
    where: dict[str, str] = {}  # the first hop of each kind
    for h in traced["hops"]:
        where.setdefault(h["kind"], h["netns"])
    if answer["mode"] == "mesh":
        # host DNAT -> ingress_sbox: mark, IPVS, SNAT -> the task
        assert kinds.index("dnat") < kinds.index("lb") < kinds.index("deliver"), kinds
        assert where["dnat"].endswith(" host") and where["lb"].endswith(" ingress_sbox")
    else:
        # client task -> lb_overlay1: IPVS, SNAT -> the task
        assert traced["client_name"].startswith("client.1.")
        assert where["lb"].endswith(" lb_overlay1") and "dnat" not in kinds[:kinds.index("lb")]
    assert kinds[-1] == "reply" and traced["status"] == "ok"
    assert where["mark"] == where["lb"]
    # A task on the other node: the path crosses the overlay, and says so.
    lb = next(h for h in traced["hops"] if h["kind"] == "lb")
    deliver = next(h for h in traced["hops"] if h["kind"] == "deliver")
    assert ("vxlan" in kinds) == (lb["node"] != deliver["node"]), traced["hops"]
    if "vxlan" in kinds:
        # Named with the VNI Docker gave the network: the ingress network for the mesh.
        vxlan = next(h for h in traced["hops"] if h["kind"] == "vxlan")
        net = "ingress" if answer["mode"] == "mesh" else "overlay1"
        # Where the kernel saw the crossing itself (the VXLAN packet at both ends), the outer
        # tuple and what was seen follow.
        seen = r" \(outer \S+ -> \S+:4789, VNI \d+; seen leaving and arriving, \d+ us\)"
        assert re.fullmatch(rf"{lb['node']} -> {deliver['node']}, VNI \d+ \({net}\)"
                            rf"({seen})" + ("" if observed else "?"), vxlan["detail"]), vxlan


def crossing(request: Json) -> str | None:
    """What the request's VXLAN hop says was seen, without its timing (each tracer reads its
    own clock); None when it stayed on one node."""
    vxlan = next((h for h in request["hops"] if h["kind"] == "vxlan"), None)
    return None if vxlan is None else re.sub(r", \d+ us\)$", ")", vxlan["detail"])
