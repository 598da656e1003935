/* The one event layout shared by every kernel program (CO-RE and BCC) and by
 * tracer/events.py, which mirrors it as a numpy dtype; tests/test_event_layout.py
 * checks sizes and offsets against this file. Bump ST_EVENT_VERSION on any change. */
#ifndef SWARMTRACE_EVENT_H
#define SWARMTRACE_EVENT_H

#define ST_EVENT_VERSION 4

/* Where an event was taken. Netfilter points are 1 + NF_INET_* hook number. */
enum st_point {
	ST_NF_PRE = 1,      /* PREROUTING, after DNAT: entry into a netns, DNAT result, mark */
	ST_NF_IN = 2,       /* LOCAL_IN: delivered to a socket of this netns */
	ST_NF_FWD = 3,      /* FORWARD */
	ST_NF_OUT = 4,      /* LOCAL_OUT, after DNAT: sent by a local socket, mark (VIP) */
	ST_NF_POST = 5,     /* POSTROUTING, after SNAT: leaving the netns, SNAT result */
	ST_RX = 6,          /* netif_receive_skb: arrived on a device */
	ST_TX = 7,          /* net_dev_start_xmit: leaving on a device */
	ST_DROP = 8,        /* kfree_skb: dropped, aux = drop reason */
	ST_LB = 9,          /* load balancer chose a real server (IPVS ip_vs_conn_new) */
	ST_LB_SCHED = 10,   /* IPVS scheduling decision, aux = scheduler id */
	ST_LB_XMIT = 11,    /* IPVS NAT transmit of a packet */
	ST_NAT = 12,        /* netfilter NAT rewrite set up (nf_nat_setup_info) */
	ST_DNS = 13,        /* one A record of a DNS answer, see below */
	ST_VXLAN_OUT = 14,  /* a VXLAN-encapsulated packet leaving on the underlay, see below */
	ST_VXLAN_IN = 15,   /* a VXLAN-encapsulated packet arriving on the underlay */
};

/* ST_VXLAN_* events (version 2) reuse fields too: pkt = the outer UDP tuple (node addresses,
 * dport 4789), orig = the inner (overlay) tuple, proto and tcp_flags = the inner packet's,
 * aux = VNI, ct = the inner IP id (the same packet seen leaving one host and entering the
 * other has the same outer addresses, VNI, inner tuple and id), ct_status = outer IP length.
 * Version 1 records have the same layout without these two points.
 * ST_DROP of a VXLAN packet on the underlay (version 3, flag ST_F_ENCAP): pkt = the inner
 * tuple (the connection it carried), orig = the outer tuple, ct_status = outer IP length,
 * ct = the inner IP id, aux = the drop reason as for every drop. */

/* ST_DNS events reuse the tuple fields: pkt = the answer's flow, orig.saddr = the address,
 * and the 20 bytes from orig.daddr to the end hold the start of the query name (DNS wire
 * format); aux = TTL, mark = record index | answer count << 8.
 * Version 4: ct_status = the question's type (1 A, 28 AAAA), ctinfo = the response's rcode
 * (0 NOERROR, 2 SERVFAIL, 3 NXDOMAIN ...); a response without an A record gives one event
 * with ST_F_NO_ADDR: orig.saddr = 0, aux = 0, record index 0. Earlier versions have zeros
 * there (their events are all A records of NOERROR responses). */
#define ST_DNS_NAME_BYTES 20
#define ST_DNS_MAX_ANSWERS 4

/* Flags in st_event.flags */
#define ST_F_CT 0x01        /* orig/reply tuples and ct_status are valid */
#define ST_F_REPLY_DIR 0x02 /* packet travels in the conntrack reply direction */
#define ST_F_BRIDGED 0x04   /* netfilter hook ran with a bridge as input device (br_netfilter) */
#define ST_F_LOCAL 0x08     /* sent by a socket of this netns (not forwarded through it) */
#define ST_F_ENCAP 0x10     /* ST_DROP of a VXLAN packet: pkt is its inner tuple, see above */
#define ST_F_NO_ADDR 0x20   /* ST_DNS of a response without an A record, see above */

struct st_tuple {
	__u32 saddr;  /* network byte order */
	__u32 daddr;
	__u16 sport;  /* network byte order */
	__u16 dport;
};

struct st_event {
	__u64 ts_ns;      /* CLOCK_MONOTONIC (bpf_ktime_get_ns) */
	__u64 skb;        /* skb address: one packet across veth/bridge/netns hops */
	__u32 netns;      /* netns inode (net->ns.inum) */
	__u32 ifindex;    /* in device (rx, pre, in, fwd) or out device (tx, out, post) */
	__u32 mark;       /* skb->mark; for ST_LB the service fwmark */
	__u32 aux;        /* ST_DROP: skb_drop_reason; ST_LB: conn flags; else ct mark */
	__u32 ct;         /* low 32 bits of the nf_conn address: one connection in one netns */
	__u16 ct_status;  /* IPS_* bits (low 16) */
	__u8 point;       /* enum st_point */
	__u8 proto;       /* IPPROTO_TCP / IPPROTO_UDP / IPPROTO_ICMP */
	__u8 tcp_flags;   /* FIN 0x01 SYN 0x02 RST 0x04 PSH 0x08 ACK 0x10 */
	__u8 ctinfo;      /* enum ip_conntrack_info */
	__u8 flags;       /* ST_F_* */
	__u8 pad;
	struct st_tuple pkt;    /* the packet's own addresses at this point */
	struct st_tuple orig;   /* conntrack original direction tuple */
	struct st_tuple reply;  /* conntrack reply direction tuple */
};

/* Filter configuration, one entry in the st_config array map. */
#define ST_CFG_FILTER 0x01     /* only packets matching st_ports/st_addrs (or their flows) */
#define ST_CFG_ALL_PKTS 0x02   /* every packet, not only SYN/FIN/RST and first data */
#define ST_CFG_DEVICES 0x04    /* rx/tx device crossings too */
#define ST_CFG_READY 0x08      /* maps filled: BCC attaches tracepoints while it loads, before
                                * user space could configure them; until then they emit nothing */
#define ST_CFG_VXLAN 0x10      /* VXLAN packets on the underlay (vxlan_port), with inner tuple */

struct st_config {
	__u32 flags;
	__u16 vxlan_port;  /* network order; Docker's data path port, 4789 by default */
	__u16 pad;
};

/* Kernel-side counters, index into the st_counters per-CPU array. */
enum st_counter {
	ST_CNT_EMITTED = 0,
	ST_CNT_LOST = 1,       /* ring buffer reservation failed */
	ST_CNT_FILTERED = 2,   /* packets seen but not of interest */
	ST_CNT_MAX = 4,
};

#endif
