// SPDX-License-Identifier: GPL-2.0
/* CO-RE programs for BTF kernels without kprobes: BPF netfilter programs where NAT and
 * marks are decided (linked per netns by tracer/probes/core.py), and BTF tracepoints for
 * device crossings and drops. Emits struct st_event (event.h) into one ring buffer. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_endian.h>
#include "event.h"

#define NF_ACCEPT 1
#define ETH_P_IP 0x0800
#define WAKEUP_FRACTION 16
#define TCP_SYN 0x02
#define TCP_RST 0x04
#define TCP_ACK 0x10

char LICENSE[] SEC("license") = "GPL";

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 16 << 20); /* resized by the loader */
} st_events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct st_config);
} st_config SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, ST_CNT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} st_counters SEC(".maps");

/* Filter: ports and addresses of interest (network order), set by user space. Ports are one
 * bit each (bit port & 7 of byte port >> 3, port in network order) in a single array entry:
 * both ports of a packet are tested with one lookup the verifier inlines, where a hash
 * lookup per port cost ~20 ns each in every SYN's filter. */
#define ST_PORT_BYTES (65536 / 8)
struct port_bits {
	__u8 bits[ST_PORT_BYTES];
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct port_bits);
} st_ports SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 256);
	__type(key, __u32);
	__type(value, __u8);
} st_addrs SEC(".maps");

/* --filter EXPR (tracer/pcap_filter.py): packets whose given fields all equal a rule's
 * (0: any field), tried in order up to the first unused entry. */
#define ST_MAX_RULES 16
struct st_rule {
	__u32 saddr, daddr; /* network order */
	__u16 sport, dport; /* network order */
	__u8 proto;
	__u8 used;
	__u8 pad[2];
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, ST_MAX_RULES);
	__type(key, __u32);
	__type(value, struct st_rule);
} st_rules SEC(".maps");

/* Flows already found interesting, in every NAT form conntrack gave them: a flow keeps
 * matching after DNAT/SNAT changed its ports and addresses in the next netns. */
struct flow_key {
	struct st_tuple t;
	__u32 proto;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct flow_key);
	__type(value, __u8);
} st_flows SEC(".maps");

/* Where each connection started (netns inode), under every tuple it had so far: tells a
 * reply from a request without conntrack, and lets only the origin report the reply. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct flow_key);
	__type(value, __u32);
} st_origin SEC(".maps");

/* The packet as parsed from its IPv4 header. */
struct pkt {
	struct st_tuple t;
	__u8 proto;
	__u8 tcp_flags;
};

static __always_inline void count(__u32 idx)
{
	__u64 *v = bpf_map_lookup_elem(&st_counters, &idx);
	if (v)
		*v += 1;
}

static __always_inline __u32 config_flags(void)
{
	__u32 zero = 0;
	struct st_config *c = bpf_map_lookup_elem(&st_config, &zero);
	return c ? c->flags : 0;
}

/* Parse IPv4 + TCP/UDP ports at network header address nh (the device tracepoints, which run
 * for every packet they see): the IP header, ports and TCP flags in one read when the header
 * has no options, as most have (each helper call costs ~25 ns). For UDP the bytes past its
 * 8-byte header are not used. */
static __always_inline int parse_ip(unsigned char *nh, struct pkt *p)
{
	struct {
		struct iphdr ip;
		__u16 l4[7];
	} h;
	if (bpf_probe_read_kernel(&h, sizeof(h.ip) + sizeof(h.l4), nh))
		return -1;
	if (h.ip.version != 4)
		return -1;
	p->proto = h.ip.protocol;
	p->t.saddr = h.ip.saddr;
	p->t.daddr = h.ip.daddr;
	p->t.sport = p->t.dport = 0;
	p->tcp_flags = 0;
	if (h.ip.protocol != IPPROTO_TCP && h.ip.protocol != IPPROTO_UDP)
		return -1;
	if (h.ip.ihl != 5 &&
	    bpf_probe_read_kernel(h.l4, sizeof(h.l4), nh + (h.ip.ihl & 0xf) * 4))
		return -1;
	p->t.sport = h.l4[0];
	p->t.dport = h.l4[1];
	if (h.ip.protocol == IPPROTO_TCP)
		p->tcp_flags = h.l4[6] >> 8; /* byte 13, little-endian host */
	return 0;
}

/* The IP header, or NULL where the skb never had one (network_header unset, ~0: a read there
 * would fault, slowly). skb is a BTF pointer in every program here: its fields are plain
 * loads, not helper calls. */
static __always_inline unsigned char *network_header(const struct sk_buff *skb)
{
	__u16 nh = skb->network_header;
	return nh == (__u16)~0U ? NULL : skb->head + nh;
}

static __always_inline int parse_at_network_header(struct sk_buff *skb, struct pkt *p)
{
	unsigned char *nh = network_header(skb);
	return nh ? parse_ip(nh, p) : -1;
}

/* The netfilter program reads packet bytes through bpf_rdonly_cast, which the verifier turns
 * into a plain move: each field is then one fault-safe load instead of a helper call (~25 ns
 * each here). That made the run that finds an uninteresting packet, most of the ~90 runs per
 * request, several times cheaper. Weak: st_nf_hook is loaded only from Linux 6.4 on, which
 * has the kfunc (6.2); older kernels load the other programs without it. */
extern void *bpf_rdonly_cast(const void *obj, __u32 btf_id) __ksym __weak;

static __always_inline int parse_nf(const struct sk_buff *skb, struct pkt *p)
{
	unsigned char *nh = network_header(skb);
	if (!nh)
		return -1;
	const struct iphdr *ip = bpf_rdonly_cast(nh, bpf_core_type_id_kernel(struct iphdr));
	__u8 vihl = *(const __u8 *)ip; /* version and header length, as on the wire */
	if (vihl >> 4 != 4)
		return -1;
	p->proto = ip->protocol;
	p->t.saddr = ip->saddr;
	p->t.daddr = ip->daddr;
	p->t.sport = p->t.dport = 0;
	p->tcp_flags = 0;
	if (p->proto != IPPROTO_TCP && p->proto != IPPROTO_UDP)
		return -1;
	/* UDP's ports are where TCP's are. */
	const struct tcphdr *th = bpf_rdonly_cast(nh + (vihl & 0xf) * 4,
						  bpf_core_type_id_kernel(struct tcphdr));
	p->t.sport = th->source;
	p->t.dport = th->dest;
	if (p->proto == IPPROTO_TCP)
		p->tcp_flags = ((const __u8 *)th)[13];
	return 0;
}

static __always_inline void reverse(struct st_tuple *dst, const struct st_tuple *src)
{
	dst->saddr = src->daddr;
	dst->daddr = src->saddr;
	dst->sport = src->dport;
	dst->dport = src->sport;
}

static __always_inline int flow_known(const struct st_tuple *t, __u8 proto)
{
	struct flow_key k = {.t = *t, .proto = proto};
	if (bpf_map_lookup_elem(&st_flows, &k))
		return 1;
	reverse(&k.t, t);
	return bpf_map_lookup_elem(&st_flows, &k) != NULL;
}

static __always_inline void flow_add(const struct st_tuple *t, __u8 proto)
{
	struct flow_key k = {.t = *t, .proto = proto};
	__u8 one = 1;
	bpf_map_update_elem(&st_flows, &k, &one, BPF_ANY);
}

static __always_inline int port_bit(const struct port_bits *b, __u16 port)
{
	return (b->bits[port >> 3] >> (port & 7)) & 1;
}

/* Remember a newly watched flow as it looks before and after this netns's NAT: once where NAT
 * changed nothing (each LRU hash update takes a node, and under load the map is full: every
 * update evicts). */
static __always_inline void flow_add_nat_forms(const struct st_tuple *orig,
					       const struct st_tuple *reply, __u8 proto)
{
	struct st_tuple after;
	reverse(&after, reply);
	flow_add(orig, proto);
	if (after.saddr != orig->saddr || after.daddr != orig->daddr ||
	    after.sport != orig->sport || after.dport != orig->dport)
		flow_add(&after, proto);
}

static __always_inline int selector_match(const struct st_tuple *t)
{
	__u32 zero = 0;
	const struct port_bits *b = bpf_map_lookup_elem(&st_ports, &zero);
	if (b && (port_bit(b, t->dport) || port_bit(b, t->sport)))
		return 1;
	__u32 saddr = t->saddr, daddr = t->daddr;
	return bpf_map_lookup_elem(&st_addrs, &daddr) || bpf_map_lookup_elem(&st_addrs, &saddr);
}

static __always_inline int rules_match(const struct st_tuple *t, __u8 proto)
{
	for (__u32 i = 0; i < ST_MAX_RULES; i++) {
		__u32 k = i;
		struct st_rule *r = bpf_map_lookup_elem(&st_rules, &k);
		if (!r || !r->used)
			return 0;
		if ((!r->proto || r->proto == proto) && (!r->saddr || r->saddr == t->saddr) &&
		    (!r->daddr || r->daddr == t->daddr) && (!r->sport || r->sport == t->sport) &&
		    (!r->dport || r->dport == t->dport))
			return 1;
	}
	return 0;
}

/* A flow not seen before is of interest: --port/--addr selectors, or a --filter rule. */
static __always_inline int wanted(const struct st_tuple *t, __u8 proto)
{
	return selector_match(t) || rules_match(t, proto);
}

/* Only packets that change what a request looks like: the first packet (SYN, or any
 * datagram), the first reply where the connection started, refusals (RST). A request
 * costs about one event per netns on its way in and one on the way back. */
static __always_inline int informative(const struct pkt *p, __u32 cfg)
{
	if (cfg & ST_CFG_ALL_PKTS)
		return 1;
	return p->proto == IPPROTO_UDP || (p->tcp_flags & (TCP_SYN | TCP_RST));
}

/* Decide direction by where the flow started, remember the flow's NAT forms under the same
 * origin, and report replies only in the origin netns (unless every packet is wanted). */
static __always_inline int origin_gate(const struct pkt *p, const struct st_tuple *orig,
				       const struct st_tuple *reply, int has_ct, __u8 ctinfo,
				       __u32 netns, __u32 cfg)
{
	struct flow_key key = {.t = has_ct ? *orig : p->t, .proto = p->proto};
	int is_reply = has_ct && ctinfo >= 3; /* IP_CT_IS_REPLY */
	__u32 *home = bpf_map_lookup_elem(&st_origin, &key);
	if (!has_ct && !home) {
		struct flow_key back = {.proto = p->proto};
		reverse(&back.t, &p->t);
		home = bpf_map_lookup_elem(&st_origin, &back);
		if (home) {
			key = back;
			is_reply = 1;
		}
	}
	if (!is_reply) {
		__u32 h = home ? *home : netns;
		if (!home)
			bpf_map_update_elem(&st_origin, &key, &h, BPF_NOEXIST);
		if (has_ct) {
			struct flow_key after = {.proto = p->proto};
			reverse(&after.t, reply);
			/* Looked up first: an LRU hash update takes a free node before it looks for
			 * the key, and most packets are in a form this flow already had. */
			if (!bpf_map_lookup_elem(&st_origin, &after))
				bpf_map_update_elem(&st_origin, &after, &h, BPF_NOEXIST);
		}
		return (cfg & ST_CFG_ALL_PKTS) || p->proto == IPPROTO_UDP ||
		       (p->tcp_flags & TCP_RST) || !(p->tcp_flags & TCP_ACK);
	}
	return (cfg & ST_CFG_ALL_PKTS) || !home || *home == netns;
}

/* A tuple field inside a copy of one struct nf_conntrack_tuple_hash, at the running kernel's
 * offset (CO-RE). */
#define TUPLE_FIELD(hash, type, field)                                                     \
	(*(const type *)((hash) + bpf_core_field_offset(struct nf_conntrack_tuple_hash, field)))

static __always_inline void tuple_from(struct st_tuple *dst, const unsigned char *hash)
{
	dst->saddr = TUPLE_FIELD(hash, __u32, tuple.src.u3.ip);
	dst->daddr = TUPLE_FIELD(hash, __u32, tuple.dst.u3.ip);
	dst->sport = TUPLE_FIELD(hash, __u16, tuple.src.u.all);
	dst->dport = TUPLE_FIELD(hash, __u16, tuple.dst.u.all);
}

/* Both conntrack tuples with one helper call instead of eight (ct is not a BTF pointer: its
 * fields cannot be plain loads). The copy has this build's size; were the running kernel's
 * array larger, the verifier would refuse the program rather than let it read wrong fields. */
static __always_inline void read_tuples(struct nf_conn *ct, struct st_tuple *orig,
					struct st_tuple *reply)
{
	unsigned char copy[sizeof(ct->tuplehash)];
	if (bpf_core_read(copy, sizeof(copy), &ct->tuplehash))
		return;
	tuple_from(orig, copy);
	tuple_from(reply, copy + bpf_core_type_size(struct nf_conntrack_tuple_hash));
}

static __always_inline struct st_event *reserve(void)
{
	struct st_event *e = bpf_ringbuf_reserve(&st_events, sizeof(*e), 0);
	if (!e) {
		count(ST_CNT_LOST);
		return NULL;
	}
	__builtin_memset(e, 0, sizeof(*e));
	e->ts_ns = bpf_ktime_get_ns();
	return e;
}

static __always_inline void submit(struct st_event *e)
{
	/* Waking the reader per event costs more than the event: it polls every ~100 ms
	 * and is woken early only when a backlog builds up, 1/16 of the ring (a fixed 1 MiB
	 * was never reached in a small ring: it filled between two polls). Past that, only
	 * every 64th event of a CPU wakes it: a forced wake-up took a run from ~190 ns to
	 * ~5.5 us (scripts/bench loss), so waking on every event made a lagging reader slow
	 * the traced node 28 times per event. Each CPU keeps waking while the backlog lasts,
	 * so no wake-up is lost to a race between CPUs. */
	__u32 idx = ST_CNT_EMITTED;
	__u64 *emitted = bpf_map_lookup_elem(&st_counters, &idx);
	__u64 backlog = bpf_ringbuf_query(&st_events, BPF_RB_AVAIL_DATA);
	__u64 size = bpf_ringbuf_query(&st_events, BPF_RB_RING_SIZE);
	int wake = backlog > size / WAKEUP_FRACTION && emitted && (*emitted & 63) == 0;
	bpf_ringbuf_submit(e, wake ? BPF_RB_FORCE_WAKEUP : BPF_RB_NO_WAKEUP);
	if (emitted)
		*emitted += 1;
}

static __always_inline __u32 dev_netns(const struct net_device *dev)
{
	return dev->nd_net.net->ns.inum;
}

/* br_netfilter runs the IP hooks for frames crossing a bridge with the bridge device as
 * the input device: that is how a bridged frame shows itself here. */
static __always_inline int is_bridge(const struct net_device *dev)
{
	if (!dev)
		return 0;
	__u64 pf = BPF_CORE_READ_BITFIELD(dev, priv_flags);
	return (pf & bpf_core_enum_value(enum netdev_priv_flags, IFF_EBRIDGE)) != 0;
}

#include "dns.h"

/* The UDP payload of a packet whose IP header starts at network_header. */
static __always_inline unsigned char *udp_payload(struct sk_buff *skb)
{
	/* Read with a helper, not loaded: the verifier then sees a plain number, and dns.h's
	 * loops over it prune (as a loaded pointer with a variable offset they exceed its limit). */
	unsigned char *nh = BPF_CORE_READ(skb, head) + BPF_CORE_READ(skb, network_header);
	__u8 vihl = 0;
	bpf_probe_read_kernel(&vihl, 1, nh);
	return nh + (vihl & 0xf) * 4 + 8;
}

/* One netfilter hook: hook number comes from the link, point = hook + 1. */
static __always_inline int nf_event(struct bpf_nf_ctx *ctx)
{
	struct sk_buff *skb = ctx->skb;
	const struct nf_hook_state *state = ctx->state;
	__u32 cfg = config_flags();
	struct pkt p;

	if (parse_nf(skb, &p) || !informative(&p, cfg))
		return NF_ACCEPT;

	__u8 hook = state->hook;
	unsigned long nfct = skb->_nfct;
	struct nf_conn *ct = (struct nf_conn *)(nfct & ~7UL);
	__u8 ctinfo = nfct & 7;
	struct st_tuple orig = {}, reply = {};
	__u32 status = ct ? BPF_CORE_READ(ct, status) : 0;
	/* POSTROUTING only tells something new when SNAT rewrote the source (checked before
	 * the tuples are read: most packets leave a netns without SNAT). */
	if (hook == 4 && !(status & IPS_SRC_NAT))
		return NF_ACCEPT;
	if (ct)
		read_tuples(ct, &orig, &reply);
	__u32 netns = state->net->ns.inum;

	if (cfg & ST_CFG_FILTER) {
		int hit = flow_known(&p.t, p.proto) || (ct && flow_known(&orig, p.proto));
		if (!hit && !wanted(&p.t, p.proto) && !(ct && wanted(&orig, p.proto))) {
			count(ST_CNT_FILTERED);
			return NF_ACCEPT;
		}
		if (ct && !hit)
			flow_add_nat_forms(&orig, &reply, p.proto);
	}

	if (!origin_gate(&p, &orig, &reply, ct != NULL, ctinfo, netns, cfg))
		return NF_ACCEPT;
	/* Answers first, so they are in when the reply event completes the query. */
	if (p.proto == IPPROTO_UDP && hook == 3 &&
	    (p.t.sport == bpf_htons(53) || (ct && orig.dport == bpf_htons(53))))
		dns_answers((__u64)skb, udp_payload(skb), &p.t, p.proto, netns);

	struct st_event *e = reserve();
	if (!e)
		return NF_ACCEPT;
	const struct net_device *dev = hook <= 2 ? state->in : state->out;
	e->skb = (__u64)skb;
	e->netns = netns;
	e->ifindex = dev ? dev->ifindex : 0;
	e->mark = skb->mark;
	e->point = hook + 1;
	e->proto = p.proto;
	e->tcp_flags = p.tcp_flags;
	e->pkt = p.t;
	if (ct) {
		e->flags |= ST_F_CT;
		e->ct = (__u32)(unsigned long)ct;
		e->ct_status = status;
		e->ctinfo = ctinfo;
		e->aux = BPF_CORE_READ(ct, mark);
		e->orig = orig;
		e->reply = reply;
		if (ctinfo >= 3) /* IP_CT_IS_REPLY */
			e->flags |= ST_F_REPLY_DIR;
	}
	if (is_bridge(state->in))
		e->flags |= ST_F_BRIDGED;
	submit(e);
	return NF_ACCEPT;
}

/* libbpf 1.1 does not know SEC("netfilter"): the loader sets the program type
 * (BPF_PROG_TYPE_NETFILTER) and attach type before load, and links each hook itself. */
SEC("netfilter")
int st_nf_hook(struct bpf_nf_ctx *ctx)
{
	return nf_event(ctx);
}

/* Device crossings and drops: no conntrack here; a packet is of interest when the
 * netfilter hooks already recorded its flow (or it matches the selectors). */
static __always_inline int dev_event(struct sk_buff *skb, const struct net_device *dev,
				     __u8 point, __u32 reason, int at_data)
{
	__u32 cfg = config_flags();
	struct pkt p;
	if (skb->protocol != bpf_htons(ETH_P_IP))
		return 0;
	if (at_data ? parse_ip(skb->data, &p) : parse_at_network_header(skb, &p))
		return 0;
	if (point != ST_DROP && !informative(&p, cfg))
		return 0;

	/* At transmit the skb is still in the sending netns with conntrack attached: its
	 * tuples carry every NAT decision of this netns (IPVS included), which is what the
	 * netfilter hooks would show on kernels that have them. */
	struct st_tuple orig = {}, reply = {};
	struct nf_conn *ct = NULL;
	unsigned long nfct = 0;
	if (point == ST_TX) {
		nfct = skb->_nfct;
		ct = (struct nf_conn *)(nfct & ~7UL);
		if (ct) {
			read_tuples(ct, &orig, &reply);
		}
	}
	if (cfg & ST_CFG_FILTER) {
		int hit = flow_known(&p.t, p.proto) || (ct && flow_known(&orig, p.proto));
		if (!hit && !wanted(&p.t, p.proto) && !(ct && wanted(&orig, p.proto))) {
			count(ST_CNT_FILTERED);
			return 0;
		}
		if (ct && !hit)
			flow_add_nat_forms(&orig, &reply, p.proto);
	}

	if (!dev)
		dev = skb->dev;
	__u32 netns = dev ? dev_netns(dev) : 0;
	if (point != ST_DROP && !origin_gate(&p, &orig, &reply, ct != NULL, nfct & 7, netns, cfg))
		return 0;

	struct st_event *e = reserve();
	if (!e)
		return 0;
	if (ct) {
		e->orig = orig;
		e->reply = reply;
		e->ct_status = BPF_CORE_READ(ct, status);
		e->ct = (__u32)(unsigned long)ct;
		e->ctinfo = nfct & 7;
		e->flags |= ST_F_CT | (e->ctinfo >= 3 ? ST_F_REPLY_DIR : 0);
	}
	e->skb = (__u64)skb;
	e->netns = netns;
	e->ifindex = dev ? dev->ifindex : 0;
	e->mark = skb->mark;
	e->aux = reason;
	e->point = point;
	e->proto = p.proto;
	e->tcp_flags = p.tcp_flags;
	e->pkt = p.t;
	submit(e);
	return 0;
}

/* vxlan.h's hooks: an inner packet of interest as dev_event decides it, placed where seen.
 * A drop is of interest for any packet of a watched connection, not only its first. */
static __always_inline int vxlan_wanted(const struct pkt *p, __u32 cfg, __u8 point)
{
	if (point != ST_DROP && !informative(p, cfg))
		return 0;
	if ((cfg & ST_CFG_FILTER) && !flow_known(&p->t, p->proto) && !selector_match(&p->t)) {
		count(ST_CNT_FILTERED);
		return 0;
	}
	return 1;
}

static __always_inline void vxlan_place(struct st_event *e, struct sk_buff *skb,
					struct net_device *dev)
{
	if (!dev)
		dev = skb->dev;
	e->skb = (__u64)skb;
	e->netns = dev ? dev_netns(dev) : 0;
	e->ifindex = dev ? dev->ifindex : 0;
	e->mark = skb->mark;
}

#include "vxlan.h"

/* The VXLAN crossing (vxlan.h) when it is traced, or a VXLAN packet dropped (point ST_DROP,
 * with its reason); -1 when this is not a VXLAN packet. */
static __always_inline int vxlan_at(struct sk_buff *skb, struct net_device *dev, __u8 point,
				    int at_data, __u32 reason)
{
	__u32 zero = 0;
	struct st_config *c = bpf_map_lookup_elem(&st_config, &zero);
	if (!c || !(c->flags & ST_CFG_VXLAN) || !c->vxlan_port)
		return -1;
	if (skb->protocol != bpf_htons(ETH_P_IP))
		return -1;
	unsigned char *nh = at_data ? skb->data : network_header(skb);
	if (!nh)
		return -1;
	return vxlan_event(skb, dev, nh, point, c, reason);
}

SEC("tp_btf/netif_receive_skb")
int BPF_PROG(st_rx, struct sk_buff *skb)
{
	if (vxlan_at(skb, NULL, ST_VXLAN_IN, 1, 0) == 0)
		return 0;
	if (!(config_flags() & ST_CFG_DEVICES))
		return 0;
	/* At receive the MAC header is pulled: data is the IP header. */
	return dev_event(skb, NULL, ST_RX, 0, 1);
}

SEC("tp_btf/net_dev_start_xmit")
int BPF_PROG(st_tx, struct sk_buff *skb, struct net_device *dev)
{
	if (vxlan_at(skb, dev, ST_VXLAN_OUT, 0, 0) == 0)
		return 0;
	if (!(config_flags() & ST_CFG_DEVICES))
		return 0;
	return dev_event(skb, dev, ST_TX, 0, 0);
}

SEC("tp_btf/kfree_skb")
int BPF_PROG(st_drop, struct sk_buff *skb, void *location, enum skb_drop_reason reason)
{
	if (vxlan_at(skb, NULL, ST_DROP, 0, reason) == 0)
		return 0;
	return dev_event(skb, NULL, ST_DROP, reason, 0);
}
