"""A verdict on a finished request that is not ok: where it failed (node, netns, hop), why,
the evidence from its own hops, and what to do, in Swarm's terms.

Reads the request and the names (topology) only. Kernel drop reasons are the kernel's enum
skb_drop_reason names as the probes reported them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from tracer.diagnose.conntrack import ConntrackUse
from tracer.diagnose.dns_failure import dns_failure
from tracer.drops import VXLAN_SIZE
from tracer.enrich.names import Names
from tracer.events import Flow
from tracer.model import Hop, HopKind, Request, Status, Verdict

CHECK = "run `swarmtrace check`"
# A dropped VXLAN packet this large, of a connection whose handshake crossed, is one the
# underlay's MTU refused (an underlay below 1280 bytes carries no IPv6 either).
MTU_SUSPECT = 1280
# (netns inode, request start, its protocol and every tuple it had) -> the netfilter rules
# that dropped its packets there since then
DroppedBy = Callable[[int, int, str, frozenset[Flow]], list[str]]


def explain(req: Request, names: Names | None = None, conntrack: ConntrackUse | None = None,
            dropped_by: DroppedBy | None = None) -> Verdict | None:
    """The verdict on req, None if it is ok (or still open)."""
    if req.status in (Status.OK, Status.OPEN, Status.DNS_SEARCH, Status.DNS_FORWARDED):
        return None
    if req.status == Status.DNS_FAILED:
        return dns_failure(req)
    drop = next((h for h in req.hops if h.kind == HopKind.DROP), None)
    if req.resumed is not None and drop is not None:
        return _cut(req, drop, names, conntrack)
    stale = _stale_pick(req, names)
    if stale is not None:
        return stale
    if drop is not None and req.status != Status.REFUSED:
        reason = drop.detail.partition(VXLAN_SIZE)[0]
        rules = dropped_by(drop.netns, req.start_ns, req.proto, _tuples(req)) \
            if dropped_by is not None and drop.netns and reason == "NETFILTER_DROP" else []
        return _drop(req, drop, names, conntrack, rules)
    if req.status == Status.REFUSED:
        return _refused(req)
    if req.client.dport == 53:
        first = req.hops[0] if req.hops else None
        return Verdict(first.node if first else "", first.where if first else "", "dns",
                       "dns-no-answer", f"query to {req.client.dst} got no answer",
                       "Docker DNS did not answer: is the daemon up and the container's "
                       "127.0.0.11 DNAT in place? (moby#26323, moby#28843)")
    deliver = next((h for h in req.hops if h.kind == HopKind.DELIVER), None)
    if req.status == Status.NO_REPLY and deliver is not None:
        return Verdict(deliver.node, deliver.where, "deliver", "no-answer",
                       f"reached {req.backend_name or deliver.where} ({req.backend_addr}); "
                       "no SYN-ACK and no RST came back",
                       "the task never answered: its process is hung or its replies are lost "
                       "on the way back (trace with --all-packets; " + CHECK + ")")
    last = req.hops[-1] if req.hops else None
    lost = _lost_between_nodes(req, last, names)
    if lost is not None:
        return lost
    return Verdict(last.node if last else "", last.where if last else "",
                   str(last.kind) if last else "", "unrouted",
                   f"last seen in {last.where if last else 'no netns'}; it reached no task",
                   "no route or no balancer for " + req.client.dst + ": " + CHECK)


def _tuples(req: Request) -> frozenset[Flow]:
    """Every tuple req had on its way: as sent, and before and after each rewrite."""
    return frozenset((req.client, *(f for h in req.hops for f in (h.before, h.after)
                                    if f is not None)))


def _stale_pick(req: Request, names: Names | None) -> Verdict | None:
    """A balancer (IPVS) or a DNS answer sent the request to an address nothing has."""
    if names is None:
        return None
    lb = next((h for h in req.hops if h.kind == HopKind.LB and h.after is not None), None)
    if lb is not None and lb.after is not None:
        ip = lb.after.daddr
        if names.addr(ip, lb.ts_ns) is None:
            return Verdict(lb.node, lb.where, "lb", "stale-backend",
                           f"{lb.detail or 'the balancer'} picked {lb.after.dst}, an address no "
                           "running task has",
                           "a stale IPVS real server: `docker service update --force` the "
                           "service, " + CHECK + " (moby#30464, moby#33790, moby#28564)")
    dns = next((h for h in req.hops if h.kind == HopKind.DNS and ": picked " in h.detail), None)
    if dns is not None and lb is None:
        ip = req.client.daddr
        addr = names.addr(ip, dns.ts_ns)
        if addr is None or addr.kind not in ("task", "vip"):
            what = "nothing" if addr is None else f"{addr.label}, not a task"
            return Verdict(dns.node, dns.where, "dns", "dns-stale",
                           f"Docker DNS answered {dns.detail.split(':')[0]}; {ip} is {what}",
                           "DNS out of step with the running tasks (moby#40300): " + CHECK)
    return None


def _lost_between_nodes(req: Request, last: Hop | None, names: Names | None) -> Verdict | None:
    """Sent toward a task on another node, seen on its own node only: the overlay's VXLAN
    packets (udp/4789) never arrived there."""
    if names is None or last is None or not last.node:
        return None
    lb = next((h for h in req.hops if h.kind == HopKind.LB and h.after is not None), None)
    ip = lb.after.daddr if lb is not None and lb.after is not None else req.client.daddr
    target = names.addr(ip, req.start_ns)
    if target is None or not target.node or target.node == last.node \
            or any(h.node == target.node for h in req.hops):
        return None
    return Verdict(last.node, last.where, "vxlan", "vxlan-lost",
                   f"sent to {target.label} on {target.node} ({ip}); seen on {last.node} only, "
                   f"nothing arrived on {target.node}",
                   f"VXLAN (udp/4789) from {last.node} to {target.node} is blocked or lost: "
                   "check the firewalls between the nodes (moby#33416, moby#25836); " + CHECK)


def _cut(req: Request, d: Hop, names: Names | None, conntrack: ConntrackUse | None
         ) -> Verdict:
    """A packet dropped in the middle of a connection: where nothing held it any more."""
    assert req.resumed is not None
    r = req.resumed
    age = (req.start_ns - r.opened_ns) / 1e9
    ago = f"{age:.1f} s" if age >= 1 else f"{age * 1e3:.1f} ms"
    opened = f"opened {ago} earlier by request #{r.opened_by}" if r.opened_by \
        else "opened before the trace began"
    reset = "; a RST went back to the client" if req.status == Status.REFUSED else ""
    kind = _sandbox_kind(d, names)
    evidence = f"a packet in the middle of {req.client} ({opened}) was dropped in {d.where}: " \
        f"{d.detail}{reset}"
    if kind in ("ingress_sbox", "lb") and d.detail in ("NO_SOCKET", "NETFILTER_DROP"):
        return Verdict(d.node, d.where, "drop", "idle-timeout",
                       evidence + f"; {d.where} no longer balances it (no IPVS entry): its own "
                       "stack got the packet",
                       f"IPVS forgot the idle connection: its tcp timeout (`ipvsadm -L "
                       f"--timeout` in {d.where}; 900 s by default) is shorter than the "
                       "connection's silence: keep TCP keepalive below it in clients and tasks "
                       "(net.ipv4.tcp_keepalive_time, or the driver's keepalive option) "
                       "(moby#31208, moby#37822); " + CHECK)
    reason, _, size = d.detail.partition(VXLAN_SIZE)
    if size and int(size.split()[0]) >= MTU_SUSPECT:
        outer = f" ({d.before})" if d.before is not None else ""
        return Verdict(d.node, d.where, "drop", "mtu",
                       evidence + f"{outer}: its handshake crossed the underlay, its "
                       "full-size packets do not",
                       "the underlay's MTU is below the overlay's + 50 bytes of VXLAN: small "
                       "requests pass, large responses die between the nodes; set the "
                       "overlay's MTU 50 below the underlay's (docker network create --opt "
                       "com.docker.network.driver.mtu=N) or raise the underlay's "
                       "(libnetwork#2661, moby#41775); " + CHECK)
    if reason == "NO_SOCKET":
        return Verdict(d.node, d.where, "drop", "connection-lost", evidence,
                       f"nothing in {d.where} holds this connection any more: the task "
                       "restarted or closed it; the client must reconnect")
    v = _drop(req, d, names, conntrack, [])
    return replace(v, evidence=evidence)


def _sandbox_kind(d: Hop, names: Names | None) -> str:
    """The kind of sandbox hop d happened in, by its netns's name then or by its label."""
    ns = names.netns(d.netns, d.ts_ns) if names is not None and d.netns else None
    return ns.kind if ns is not None else _kind_from_name(d.where)


def _refused(req: Request) -> Verdict:
    reply = next((h for h in req.hops if h.kind == HopKind.DELIVER), None) or \
        next((h for h in reversed(req.hops) if h.kind != HopKind.REPLY), None)
    where = reply.where if reply else ""
    port = req.backend_addr.rsplit(":", 1)[-1] if req.backend_addr else str(req.client.dport)
    return Verdict(reply.node if reply else "", where, "deliver", "refused",
                   f"RST from {req.backend_name or where} ({req.backend_addr or req.client.dst})",
                   f"nothing listens on port {port} there: is the task's process up "
                   "(`docker service ps`), and on the port the service targets?")


def _drop(req: Request, d: Hop, names: Names | None, conntrack: ConntrackUse | None,
          rules: list[str]) -> Verdict:
    reason, _, size = d.detail.partition(VXLAN_SIZE)
    if size:
        by = f" by {'; '.join(rules)}" if rules else ""
        return Verdict(d.node, d.where, "drop", "vxlan-lost",
                       f"the VXLAN packet carrying it ({d.before}, {size}) was dropped in "
                       f"{d.where}: {reason}{by}",
                       f"VXLAN (udp/4789) between the nodes is blocked or lost in {d.where}: "
                       "check the firewalls between the nodes (moby#33416, moby#25836); "
                       + CHECK)
    kind = _sandbox_kind(d, names)
    before = [h for h in req.hops if h.netns == d.netns and h.where == d.where
              and h.ts_ns <= d.ts_ns and h.kind != HopKind.DROP]
    nat = next((h for h in reversed(before) if h.kind in (HopKind.DNAT, HopKind.LB)), None)
    after = f" after {'LB' if nat and nat.kind == HopKind.LB else 'DNAT'} to " \
        f"{nat.after.dst}" if nat is not None and nat.after is not None else ""
    evidence = f"dropped in {d.where}{after}: {reason}"
    if rules:
        evidence += f" by {'; '.join(rules)}"

    def v(cause: str, hint: str) -> Verdict:
        return Verdict(d.node, d.where, "drop", cause, evidence, hint)

    if reason == "IP_INADDRERRORS":
        if kind in ("ingress_sbox", "lb", "host"):
            return v("forwarding-off", f"{d.where} does not forward (net.ipv4.ip_forward=0): "
                     "sysctl -w net.ipv4.ip_forward=1 there (moby#38723, moby#47966)")
        return v("wrong-address", f"the packet was for an address {d.where} does not have: "
                 "a stale neighbour entry or a task that moved; " + CHECK)
    if reason == "IP_RPFILTER":
        return v("rp-filter", f"strict rp_filter in {d.where}: the route back to "
                 f"{req.client.saddr} leaves by another interface; set "
                 "net.ipv4.conf.all.rp_filter=2 (loose) there")
    if reason == "NETFILTER_DROP":
        if not before:
            if conntrack is not None and conntrack.full and not rules:
                return v("conntrack-full", f"the conntrack table is full ({conntrack.count} of "
                         f"nf_conntrack_max {conntrack.max}): raise "
                         "net.netfilter.nf_conntrack_max")
            return v("netfilter-early", f"netfilter dropped it entering {d.where}, before "
                     "NAT: a full conntrack table (nf_conntrack_max) or a raw/mangle rule; "
                     + CHECK)
        if kind == "host" and nat is not None:
            return v("forward-drop", f"the FORWARD chain of {d.where} dropped it: FORWARD "
                     "policy DROP or a DROP rule in DOCKER-USER/DOCKER-INGRESS "
                     "(moby#39439, moby#49536); " + CHECK)
        if kind in ("container", "named"):
            return v("task-firewall", f"a netfilter rule inside {d.where} (the task's own "
                     "INPUT) drops it silently: the client waits for a timeout")
        return v("netfilter-drop", f"a netfilter rule or policy in {d.where} dropped it; "
                 + CHECK)
    if reason.startswith("NEIGH_"):
        return v("neighbour-failed", f"no ARP answer for the next hop from {d.where}: the "
                 "task's address is gone, or the overlay's neighbour/FDB entries are missing "
                 "(moby#29417); " + CHECK)
    if reason in ("IP_INNOROUTES", "IP_OUTNOROUTES"):
        return v("no-route", f"{d.where} has no route to {req.client.dst}")
    if reason in ("PKT_TOO_BIG", "FRAG_REASM_TIMEOUT", "FRAG_TOO_FAR", "DUP_FRAG"):
        return v("mtu", "a packet larger than the path MTU: the overlay's MTU must leave 50 "
                 "bytes for VXLAN (libnetwork#2661, moby#41775); " + CHECK)
    if reason.startswith("VXLAN_"):
        return v("vxlan", "the VXLAN device refused the packet (moby#53004, moby#33416)")
    if reason == "NO_SOCKET":
        return v("refused", f"nothing listens on {req.backend_addr or req.client.dst}")
    if reason in ("SOCKET_BACKLOG", "SOCKET_RCVBUFF", "TCP_LISTEN_OVERFLOW"):
        return v("overloaded", "the task's socket queue is full: it accepts too slowly")
    if reason == "OTHERHOST":
        return v("wrong-mac", f"a frame for another MAC reached {d.where}: a stale neighbour "
                 "entry; " + CHECK)
    return v("kernel-drop", f"the kernel dropped it ({reason}); " + CHECK)


def _kind_from_name(where: str) -> str:
    """Without names (replay of JSON): the netns kind from how its hops name it."""
    last = where.split()[-1] if where else ""
    if last in ("host", "ingress_sbox"):
        return last
    return "lb" if last.startswith("lb_") else "named"
