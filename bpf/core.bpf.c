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

/* What the programs learnt about each flow, under every tuple (NAT form) conntrack gave it:
 * whether it is watched (a flow keeps matching after DNAT/SNAT changed its ports and
 * addresses in the next netns), and where it started (netns inode: tells a reply from a
 * request without conntrack, and lets only the origin report the reply). One map for both
 * facts, kept under the same tuples: what a run costs is its lookups of tuples not seen
 * before (each a cache miss) and its inserts (the map is full under load: each evicts). */
struct flow_key {
	struct st_tuple t;
	__u32 proto;
};

/* Bytes, each written alone: two CPUs learning different facts of one flow lose neither. */
struct flow_state {
	__u32 home;   /* netns inode, where homed */
	__u8 watched; /* matched the filter (here or under another of the flow's tuples) */
	__u8 homed;
	__u8 pad[2];
};

/* As many entries as the two maps (watched flows, origins) this one replaced held together. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 131072);
	__type(key, struct flow_key);
	__type(value, struct flow_state);
} st_flows SEC(".maps");

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

static __always_inline struct flow_state *flow_get(const struct st_tuple *t, __u8 proto)
{
	struct flow_key k = {.t = *t, .proto = proto};
	return bpf_map_lookup_elem(&st_flows, &k);
}

static __always_inline int watched(const struct flow_state *s)
{
	return s && s->watched;
}

static __always_inline int homed(const struct flow_state *s)
{
	return s && s->homed;
}

static __always_inline int same_tuple(const struct st_tuple *a, const struct st_tuple *b)
{
	return a->saddr == b->saddr && a->daddr == b->daddr && a->sport == b->sport &&
	       a->dport == b->dport;
}

/* A flow seen before, in either direction of tuple t (the device tracepoints' test). */
static __always_inline int flow_known(const struct st_tuple *t, __u8 proto)
{
	struct st_tuple back;
	if (watched(flow_get(t, proto)))
		return 1;
	reverse(&back, t);
	return watched(flow_get(&back, proto));
}

/* Tuple t's entry (s, or NULL where it has none) learns that the flow is watched and/or
 * where it started (home is kept where it is known already): in place, or with one insert. */
static __always_inline void flow_learn(struct flow_state *s, const struct st_tuple *t,
				       __u8 proto, int watch, int home_it, __u32 home)
{
	if (!watch && !home_it)
		return;
	if (!s) {
		struct flow_key k = {.t = *t, .proto = proto};
		struct flow_state v = {.home = home, .watched = watch, .homed = home_it};
		if (!bpf_map_update_elem(&st_flows, &k, &v, BPF_NOEXIST))
			return;
		s = bpf_map_lookup_elem(&st_flows, &k); /* another CPU added it meanwhile */
		if (!s)
			return;
	}
	if (home_it && !s->homed) {
		s->home = home;
		s->homed = 1;
	}
	if (watch)
		s->watched = 1;
}

static __always_inline int port_bit(const struct port_bits *b, __u16 port)
{
	return (b->bits[port >> 3] >> (port & 7)) & 1;
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

/* A request packet (not a reply) is reported where it is informative: the first packet of a
 * flow in each netns (no ACK), a datagram, a refusal, or every packet when asked. */
static __always_inline int report_request(const struct pkt *p, __u32 cfg)
{
	return (cfg & ST_CFG_ALL_PKTS) || p->proto == IPPROTO_UDP || (p->tcp_flags & TCP_RST) ||
	       !(p->tcp_flags & TCP_ACK);
}

/* Whether a run without conntrack reports its packet: the filter (a flow seen before in
 * either direction, or a wanted tuple), then, with gate, direction by where the flow started:
 * a packet whose reverse started somewhere is a reply, reported only there. Each tuple is
 * looked up once for both. */
static __always_inline int decide_no_ct(const struct pkt *p, __u32 netns, __u32 cfg, int gate)
{
	int filter = cfg & ST_CFG_FILTER;
	if (!filter && !gate)
		return 1;
	struct st_tuple back;
	reverse(&back, &p->t);
	struct flow_state *fwd = flow_get(&p->t, p->proto), *rev = NULL;
	int rev_read = 0;
	if (filter && !watched(fwd)) {
		rev = flow_get(&back, p->proto);
		rev_read = 1;
		if (!watched(rev) && !wanted(&p->t, p->proto)) {
			count(ST_CNT_FILTERED);
			return 0;
		}
	}
	if (!gate)
		return 1;
	if (homed(fwd))
		return report_request(p, cfg);
	if (!rev_read)
		rev = flow_get(&back, p->proto);
	if (homed(rev))
		return (cfg & ST_CFG_ALL_PKTS) || rev->home == netns;
	flow_learn(fwd, &p->t, p->proto, 0, 1, netns);
	return report_request(p, cfg);
}

/* Whether a run with conntrack reports its packet. The filter: a flow seen before under its
 * packet's or its original tuple, in either direction, or one of the two wanted; a newly
 * watched flow is remembered as it looks before and after this netns's NAT (original tuple,
 * reversed reply tuple). Direction is conntrack's: a request's tuples are homed where the
 * flow started (here, if nowhere yet), a reply is reported only there. The tuples often
 * coincide (no NAT in this netns, or the packet already NATed): each is looked up once. */
static __always_inline int decide_ct(const struct pkt *p, const struct st_tuple *orig,
				     const struct st_tuple *reply, __u8 ctinfo, __u32 netns,
				     __u32 cfg)
{
	int is_reply = ctinfo >= 3; /* IP_CT_IS_REPLY */
	struct st_tuple after;
	reverse(&after, reply);
	struct flow_state *s_orig = flow_get(orig, p->proto);
	struct flow_state *s_pkt = s_orig;
	int pkt_is_orig = same_tuple(&p->t, orig), pkt_read = pkt_is_orig;
	int watch = 0;
	if (cfg & ST_CFG_FILTER) {
		struct st_tuple back;
		reverse(&back, &p->t);
		/* back is orig's reverse when the packet is orig's, orig when the packet is its
		 * reverse: each entry read once */
		int pkt_is_back = same_tuple(&back, orig);
		int hit = watched(s_orig);
		if (!hit && !pkt_is_orig) {
			s_pkt = flow_get(&p->t, p->proto);
			pkt_read = 1;
			hit = watched(s_pkt);
		}
		if (!hit && !pkt_is_back)
			hit = watched(flow_get(&back, p->proto));
		if (!hit && !pkt_is_orig && !pkt_is_back) {
			struct st_tuple orig_back;
			reverse(&orig_back, orig);
			hit = watched(flow_get(&orig_back, p->proto));
		}
		if (!hit && !wanted(&p->t, p->proto) && !wanted(orig, p->proto)) {
			count(ST_CNT_FILTERED);
			return 0;
		}
		watch = !hit;
	}
	int home_it = !is_reply && !homed(s_orig);
	__u32 home = homed(s_orig) ? s_orig->home : netns;
	flow_learn(s_orig, orig, p->proto, watch, home_it, home);
	if (!same_tuple(&after, orig) && (watch || !is_reply)) {
		struct flow_state *s_after = pkt_read && same_tuple(&after, &p->t)
						     ? s_pkt
						     : flow_get(&after, p->proto);
		flow_learn(s_after, &after, p->proto, watch, !is_reply && !homed(s_after), home);
	}
	if (!is_reply)
		return report_request(p, cfg);
	return (cfg & ST_CFG_ALL_PKTS) || !homed(s_orig) || s_orig->home == netns;
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

	if (!(ct ? decide_ct(&p, &orig, &reply, ctinfo, netns, cfg)
		 : decide_no_ct(&p, netns, cfg, 1)))
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
	/* A drop's device is read once the filter let it through (the origin gate, which needs
	 * the netns, is not asked about drops): most drops are filtered out. */
	__u32 netns = 0;
	if (point != ST_DROP) {
		if (!dev)
			dev = skb->dev;
		netns = dev ? dev_netns(dev) : 0;
	}
	if (!(ct ? decide_ct(&p, &orig, &reply, nfct & 7, netns, cfg)
		 : decide_no_ct(&p, netns, cfg, point != ST_DROP)))
		return 0;
	if (point == ST_DROP) {
		dev = skb->dev;
		netns = dev ? dev_netns(dev) : 0;
	}

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
