// SPDX-License-Identifier: GPL-2.0
/* BCC programs for stock kernels (kprobes + headers): IPVS's own decision (ip_vs_conn_new),
 * the netfilter NAT result per netns (conntrack confirm), netns entries, drops, and the VXLAN
 * crossing on the underlay (vxlan.h, shared with the CO-RE programs).
 * Same struct st_event (event.h) and ring buffer reader as the CO-RE backend. */
#include <uapi/linux/ptrace.h>
#include <linux/skbuff.h>
#include <linux/ip.h>
#include <linux/netdevice.h>
#include <net/net_namespace.h>
#include <net/netfilter/nf_conntrack.h>
#include <net/ip_vs.h>
#include "event.h"

#define TCP_INTERESTING 0x07

BPF_RINGBUF_OUTPUT(st_events, RING_PAGES);
BPF_ARRAY(st_config, struct st_config, 1);
BPF_PERCPU_ARRAY(st_counters, u64, ST_CNT_MAX);
BPF_HASH(st_ports, u16, u8, 64);
BPF_HASH(st_addrs, u32, u8, 256);

struct flow_key {
	struct st_tuple t;
	u32 proto;
};
BPF_TABLE("lru_hash", struct flow_key, u8, st_flows, 65536);

struct pkt {
	struct st_tuple t;
	u8 proto;
	u8 tcp_flags;
};

static __always_inline void count(u32 idx)
{
	u64 *v = st_counters.lookup(&idx);
	if (v)
		*v += 1;
}

static __always_inline u32 config_flags(void)
{
	u32 zero = 0;
	struct st_config *c = st_config.lookup(&zero);
	return c ? c->flags : 0;
}

static __always_inline int parse_ip(unsigned char *nh, struct pkt *p)
{
	struct iphdr ip;
	if (bpf_probe_read_kernel(&ip, sizeof(ip), nh))
		return -1;
	if (ip.version != 4 || (ip.protocol != IPPROTO_TCP && ip.protocol != IPPROTO_UDP))
		return -1;
	p->proto = ip.protocol;
	p->t.saddr = ip.saddr;
	p->t.daddr = ip.daddr;
	p->tcp_flags = 0;
	unsigned char *th = nh + (ip.ihl & 0xf) * 4;
	u16 ports[2] = {};
	if (bpf_probe_read_kernel(ports, sizeof(ports), th))
		return -1;
	p->t.sport = ports[0];
	p->t.dport = ports[1];
	if (ip.protocol == IPPROTO_TCP)
		bpf_probe_read_kernel(&p->tcp_flags, 1, th + 13);
	return 0;
}

static __always_inline void reverse(struct st_tuple *dst, const struct st_tuple *src)
{
	dst->saddr = src->daddr;
	dst->daddr = src->saddr;
	dst->sport = src->dport;
	dst->dport = src->sport;
}

static __always_inline int flow_known(const struct st_tuple *t, u8 proto)
{
	struct flow_key k = {};
	k.t = *t;
	k.proto = proto;
	if (st_flows.lookup(&k))
		return 1;
	reverse(&k.t, t);
	return st_flows.lookup(&k) != NULL;
}

static __always_inline void flow_add(const struct st_tuple *t, u8 proto)
{
	struct flow_key k = {};
	u8 one = 1;
	k.t = *t;
	k.proto = proto;
	st_flows.update(&k, &one);
}

static __always_inline int selector_match(const struct st_tuple *t)
{
	u16 sport = t->sport, dport = t->dport;
	u32 saddr = t->saddr, daddr = t->daddr;
	return st_ports.lookup(&dport) || st_ports.lookup(&sport) || st_addrs.lookup(&daddr) ||
	       st_addrs.lookup(&saddr);
}

static __always_inline int interesting(const struct st_tuple *t, u8 proto)
{
	u32 cfg = config_flags();
	if (!(cfg & ST_CFG_READY))
		return 0;
	if (!(cfg & ST_CFG_FILTER))
		return 1;
	if (flow_known(t, proto) || selector_match(t))
		return 1;
	count(ST_CNT_FILTERED);
	return 0;
}

static __always_inline struct st_event *reserve(void)
{
	struct st_event *e = st_events.ringbuf_reserve(sizeof(struct st_event));
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
	st_events.ringbuf_submit(e, 0);
	count(ST_CNT_EMITTED);
}

#include "dns.h"

static __always_inline void read_tuple(struct st_tuple *dst, struct nf_conntrack_tuple *src)
{
	dst->saddr = src->src.u3.ip;
	dst->daddr = src->dst.u3.ip;
	dst->sport = src->src.u.all;
	dst->dport = src->dst.u.all;
}

/* The first packet of a connection leaving conntrack in a netns: its tuples now carry every
 * NAT decision that netns took (DNAT, IPVS with conntrack=1, SNAT), and skb->mark the mark. */
int on_ct_confirm(struct pt_regs *ctx, struct sk_buff *skb)
{
	struct pkt p = {};
	unsigned char *head = skb->head;
	if (parse_ip(head + skb->network_header, &p))
		return 0;
	struct nf_conn *ct = (struct nf_conn *)(skb->_nfct & ~7UL);
	if (!ct)
		return 0;
	struct st_tuple orig = {}, reply = {};
	read_tuple(&orig, &ct->tuplehash[0].tuple);
	read_tuple(&reply, &ct->tuplehash[1].tuple);
	u32 cfg = config_flags();
	if (!(cfg & ST_CFG_READY))
		return 0;
	if ((cfg & ST_CFG_FILTER) && !flow_known(&p.t, p.proto) &&
	    !flow_known(&orig, p.proto) && !selector_match(&p.t) && !selector_match(&orig)) {
		count(ST_CNT_FILTERED);
		return 0;
	}
	struct st_tuple fwd_after;
	reverse(&fwd_after, &reply);
	flow_add(&orig, p.proto);
	flow_add(&fwd_after, p.proto);

	struct st_event *e = reserve();
	if (!e)
		return 0;
	struct net_device *dev = skb->dev;
	e->skb = (u64)skb;
	e->netns = ct->ct_net.net->ns.inum;
	e->ifindex = dev ? dev->ifindex : 0;
	e->mark = skb->mark;
	e->aux = ct->mark;
	e->ct = (u32)(unsigned long)ct;
	e->ct_status = ct->status;
	e->ctinfo = skb->_nfct & 7;
	e->point = ST_NAT;
	e->proto = p.proto;
	e->tcp_flags = p.tcp_flags;
	e->flags = ST_F_CT | (skb->sk ? ST_F_LOCAL : 0);
	e->pkt = p.t;
	e->orig = orig;
	e->reply = reply;
	submit(e);
	return 0;
}

/* IPVS created a connection: the real server it chose, for which service and scheduler. */
int on_ipvs_conn_new(struct pt_regs *ctx, const struct ip_vs_conn_param *p, int dest_af,
		     const union nf_inet_addr *daddr, __be16 dport, unsigned int flags,
		     struct ip_vs_dest *dest)
{
	struct st_tuple client = {};
	client.saddr = p->caddr->ip;
	client.daddr = p->vaddr->ip;
	client.sport = p->cport;
	client.dport = p->vport;
	u8 proto = p->protocol;
	if (!interesting(&client, proto))
		return 0;
	struct st_event *e = reserve();
	if (!e)
		return 0;
	/* Later packets carry the real server as destination: keep following them. */
	struct st_tuple chosen = client;
	chosen.daddr = daddr->ip;
	chosen.dport = dport;
	flow_add(&chosen, proto);
	struct ip_vs_service *svc = dest ? dest->svc : NULL;
	if (svc) {
		e->mark = svc->fwmark;
		struct ip_vs_scheduler *sched = svc->scheduler;
		if (sched)
			bpf_probe_read_kernel(&e->aux, 4, sched->name);
	}
	e->netns = p->ipvs->net->ns.inum;
	e->point = ST_LB;
	e->proto = proto;
	e->flags = ST_F_CT;
	e->pkt = client;
	e->orig = client;
	e->reply.saddr = daddr->ip;
	e->reply.sport = dport;
	e->reply.daddr = client.saddr;
	e->reply.dport = client.sport;
	submit(e);
	return 0;
}

/* The device a packet is on (dev, else skb->dev) and its netns inode. Explicit reads: BCC
 * rewrites dereferences only inside the probe functions. */
static __always_inline struct net_device *skb_where(struct sk_buff *skb, struct net_device *dev,
						    u32 *netns)
{
	struct net *net = NULL;
	if (!dev)
		bpf_probe_read_kernel(&dev, sizeof(dev), &skb->dev);
	if (dev) {
		bpf_probe_read_kernel(&net, sizeof(net), &dev->nd_net.net);
		if (net)
			bpf_probe_read_kernel(netns, sizeof(*netns), &net->ns.inum);
	}
	return dev;
}

static __always_inline void place(struct st_event *e, struct sk_buff *skb,
				  struct net_device *dev, u32 netns)
{
	e->skb = (u64)skb;
	e->netns = netns;
	if (dev)
		bpf_probe_read_kernel(&e->ifindex, sizeof(e->ifindex), &dev->ifindex);
	bpf_probe_read_kernel(&e->mark, sizeof(e->mark), &skb->mark);
}

/* A packet of a traced flow seen on a device: arrival in a netns, or a drop. */
static __always_inline int dev_event(struct sk_buff *skb, unsigned char *nh, u8 point, u32 reason)
{
	/* Explicit reads: BCC rewrites dereferences only inside the probe functions. */
	struct pkt p = {};
	__be16 protocol = 0;
	bpf_probe_read_kernel(&protocol, sizeof(protocol), &skb->protocol);
	if (protocol != htons(ETH_P_IP))
		return 0;
	if (parse_ip(nh, &p))
		return 0;
	if (point == ST_RX && !(config_flags() & ST_CFG_ALL_PKTS) && p.proto == IPPROTO_TCP &&
	    !(p.tcp_flags & TCP_INTERESTING))
		return 0;
	if (!interesting(&p.t, p.proto))
		return 0;
	u32 netns = 0;
	struct net_device *dev = skb_where(skb, NULL, &netns);
	/* A resolver's response arriving (over lo from Docker's embedded DNS): its answers
	 * first, so they are in when this reply completes the query. */
	if (point == ST_RX && p.proto == IPPROTO_UDP && p.t.sport == htons(53)) {
		u8 vihl = 0;
		bpf_probe_read_kernel(&vihl, 1, nh);
		dns_answers((u64)skb, nh + (vihl & 0xf) * 4 + 8, &p.t, p.proto, netns);
	}
	struct st_event *e = reserve();
	if (!e)
		return 0;
	place(e, skb, dev, netns);
	e->aux = reason;
	e->point = point;
	e->proto = p.proto;
	e->tcp_flags = p.tcp_flags;
	e->pkt = p.t;
	submit(e);
	return 0;
}

/* vxlan.h's hooks: an inner packet of interest as dev_event decides it, placed where seen. */
static __always_inline int vxlan_wanted(const struct pkt *p, u32 cfg, u8 point)
{
	if (point != ST_DROP && !(cfg & ST_CFG_ALL_PKTS) && p->proto == IPPROTO_TCP &&
	    !(p->tcp_flags & TCP_INTERESTING))
		return 0;
	return interesting(&p->t, p->proto);
}

static __always_inline void vxlan_place(struct st_event *e, struct sk_buff *skb,
					struct net_device *dev)
{
	u32 netns = 0;
	dev = skb_where(skb, dev, &netns);
	place(e, skb, dev, netns);
}

#include "vxlan.h"

/* The configuration when the VXLAN crossing is traced, else NULL. */
static __always_inline struct st_config *vxlan_config(void)
{
	u32 zero = 0;
	struct st_config *c = st_config.lookup(&zero);
	if (!c || !(c->flags & ST_CFG_READY) || !(c->flags & ST_CFG_VXLAN) || !c->vxlan_port)
		return NULL;
	return c;
}

/* Both directions: netns entries, and reply timing; on the underlay, a VXLAN packet arriving.
 * At receive, data is the IP header. */
TRACEPOINT_PROBE(net, netif_receive_skb)
{
	struct sk_buff *skb = (struct sk_buff *)args->skbaddr;
	struct st_config *c = vxlan_config();
	if (c && skb->protocol == htons(ETH_P_IP) &&
	    vxlan_event(skb, NULL, skb->data, ST_VXLAN_IN, c, 0) == 0)
		return 0;
	return dev_event(skb, skb->data, ST_RX, 0);
}

/* A VXLAN packet leaving on the underlay: the other end of the crossing. */
TRACEPOINT_PROBE(net, net_dev_start_xmit)
{
	struct st_config *c = vxlan_config();
	if (!c || args->protocol != ETH_P_IP)
		return 0;
	struct sk_buff *skb = (struct sk_buff *)args->skbaddr;
	u16 nh = skb->network_header;
	/* Unset (~0) on skbs that never had an IP header. */
	if (nh == (u16)~0U)
		return 0;
	unsigned char *head = skb->head;
	vxlan_event(skb, NULL, head + nh, ST_VXLAN_OUT, c, 0);
	return 0;
}

TRACEPOINT_PROBE(skb, kfree_skb)
{
	struct sk_buff *skb = (struct sk_buff *)args->skbaddr;
	unsigned char *head = skb->head;
	u16 nh = skb->network_header;
	/* A VXLAN packet dropped on the underlay: reported with the connection it carried and
	 * its size (ST_F_ENCAP), as the CO-RE program does. */
	struct st_config *c = vxlan_config();
	if (c && skb->protocol == htons(ETH_P_IP) && nh != (u16)~0U &&
	    vxlan_event(skb, NULL, head + nh, ST_DROP, c, args->reason) == 0)
		return 0;
	return dev_event(skb, head + nh, ST_DROP, args->reason);
}
