/* SPDX-License-Identifier: GPL-2.0 */
/* The overlay crossing, for both backends: a VXLAN packet on the underlay (UDP to Docker's data
 * path port) observed where it leaves one host (net_dev_start_xmit) and where it enters the
 * other (netif_receive_skb), as one ST_VXLAN_OUT / ST_VXLAN_IN event, or where it was dropped
 * (ST_DROP with ST_F_ENCAP; event.h says which field holds what).
 *
 * Include after event.h and after defining struct pkt, parse_ip(), reserve(), submit() and
 *   vxlan_wanted(p, cfg, point): whether the inner packet is of interest (informative,
 *     filter);
 *   vxlan_place(e, skb, dev): e's skb, netns, ifindex and mark, as the backend reads them.
 * Reads packet bytes only through bpf_probe_read_kernel, which both CO-RE and BCC programs
 * have; the byte-order helpers come from libbpf's bpf_endian.h or BCC's helpers. */
#ifndef ST_VXLAN_H
#define ST_VXLAN_H

#define ST_VXLAN_FLAG_VNI 0x08 /* "I" flag: the VNI field is valid */
#define ST_ETH_P_IP 0x0800

/* nh: the packet's outer IPv4 header. Returns -1 when it is not a packet to the VXLAN port
 * (the caller goes on with its other events), 0 when it was one (reported if of interest). */
static __always_inline int vxlan_event(struct sk_buff *skb, struct net_device *dev,
				       unsigned char *nh, __u8 point, const struct st_config *c,
				       __u32 reason)
{
	struct iphdr ip;
	if (bpf_probe_read_kernel(&ip, sizeof(ip), nh) || ip.version != 4 ||
	    ip.protocol != IPPROTO_UDP)
		return -1;
	unsigned char *uh = nh + (ip.ihl & 0xf) * 4;
	__u16 ports[2];
	if (bpf_probe_read_kernel(ports, sizeof(ports), uh) || ports[1] != c->vxlan_port)
		return -1;
	/* VXLAN header (8 bytes: flags, VNI in bytes 4-6), inner Ethernet (14), inner IPv4. */
	__u8 vx[8];
	__u16 ethertype;
	if (bpf_probe_read_kernel(vx, sizeof(vx), uh + 8) || !(vx[0] & ST_VXLAN_FLAG_VNI))
		return 0;
	if (bpf_probe_read_kernel(&ethertype, 2, uh + 16 + 12) ||
	    ethertype != bpf_htons(ST_ETH_P_IP))
		return 0;
	unsigned char *inner = uh + 16 + 14;
	struct pkt p = {};
	if (parse_ip(inner, &p) || !vxlan_wanted(&p, c->flags, point))
		return 0;
	__u16 inner_id = 0;
	bpf_probe_read_kernel(&inner_id, 2, inner + 4);
	struct st_event *e = reserve();
	if (!e)
		return 0;
	vxlan_place(e, skb, dev);
	e->point = point;
	e->proto = p.proto;
	e->tcp_flags = p.tcp_flags;
	struct st_tuple outer = {.saddr = ip.saddr, .daddr = ip.daddr,
				 .sport = ports[0], .dport = ports[1]};
	if (point == ST_DROP) {
		e->flags = ST_F_ENCAP;
		e->pkt = p.t;
		e->orig = outer;
		e->aux = reason;
	} else {
		e->pkt = outer;
		e->orig = p.t;
		e->aux = ((__u32)vx[4] << 16) | ((__u32)vx[5] << 8) | vx[6];
	}
	e->ct = bpf_ntohs(inner_id);
	e->ct_status = bpf_ntohs(ip.tot_len);
	submit(e);
	return 0;
}

#endif
