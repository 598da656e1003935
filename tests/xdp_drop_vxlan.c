// SPDX-License-Identifier: GPL-2.0
/* Test helper for tests/test_remote_lab.py: drops VXLAN (UDP 4789) on the device it is
 * attached to, before the stack sees it (native XDP on a veth runs before
 * netif_receive_skb): the data-path port blocked between two nodes. */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/udp.h>
#include <linux/in.h>

#define SEC(name) __attribute__((section(name), used))

SEC("xdp")
int drop_vxlan(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data, *end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip = (void *)(eth + 1);
	struct udphdr *udp = (void *)(ip + 1);
	if ((void *)(udp + 1) > end || eth->h_proto != __builtin_bswap16(ETH_P_IP))
		return XDP_PASS;
	if (ip->protocol != IPPROTO_UDP || ip->ihl != 5)
		return XDP_PASS;
	return udp->dest == __builtin_bswap16(4789) ? XDP_DROP : XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";
