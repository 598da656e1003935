/* SPDX-License-Identifier: GPL-2.0 */
/* DNS answers, for both backends: a response leaving a resolver (Docker's embedded DNS answers
 * inside the client's own netns) becomes one ST_DNS event per A record, so the trace shows the
 * answer list, its order and TTL, and which address the following connection picked; a
 * response without one (NXDOMAIN, SERVFAIL, no answer) one ST_DNS event with ST_F_NO_ADDR.
 *
 * Include after event.h and after defining reserve() and submit(). Reads only through
 * bpf_probe_read_kernel, which both CO-RE and BCC programs have; the byte-order helpers
 * bpf_ntohs/bpf_ntohl come from libbpf's bpf_endian.h or BCC's helpers. */
#ifndef ST_DNS_H
#define ST_DNS_H

/* The event of one record, or of a response without an A record (addr NULL): everything but
 * the record's own fields. Its caller submits it. */
static __always_inline struct st_event *dns_event(__u64 skb, unsigned char *dns,
						  const struct st_tuple *t, __u8 proto,
						  __u32 netns, __u16 qtype, __u16 flags)
{
	struct st_event *e = reserve();
	if (!e)
		return NULL;
	bpf_probe_read_kernel(&e->orig.daddr, ST_DNS_NAME_BYTES, dns + 12);
	e->skb = skb;
	e->netns = netns;
	e->ct_status = qtype;
	e->ctinfo = flags & 0xf; /* the rcode */
	e->point = ST_DNS;
	e->proto = proto;
	e->pkt = *t;
	return e;
}

/* dns: the UDP payload of the response; t/proto: its packet, for the event. */
static __always_inline void dns_answers(__u64 skb, unsigned char *dns, const struct st_tuple *t,
					__u8 proto, __u32 netns)
{
	__u16 hdr[6];
	if (bpf_probe_read_kernel(hdr, sizeof(hdr), dns))
		return;
	__u16 flags = bpf_ntohs(hdr[1]);
	__u16 answers = bpf_ntohs(hdr[3]);
	if (!(flags & 0x8000) || bpf_ntohs(hdr[2]) != 1)
		return;
	__u32 off = 12;
	for (int i = 0; i < 32; i++) { /* the question's name: labels up to a zero byte */
		__u8 len;
		if (bpf_probe_read_kernel(&len, 1, dns + off))
			return;
		off += 1 + len;
		if (!len)
			break;
	}
	__u16 qtype = 0;
	bpf_probe_read_kernel(&qtype, 2, dns + off);
	qtype = bpf_ntohs(qtype);
	off += 4; /* qtype, qclass */
	__u8 index = 0;
	for (int i = 0; i < 8 && i < answers && index < ST_DNS_MAX_ANSWERS; i++) {
		/* The record's owner name: a compression pointer, or labels (Docker's resolver
		 * does not compress). */
		for (int j = 0; j < 32; j++) {
			__u8 len;
			if (bpf_probe_read_kernel(&len, 1, dns + off))
				return;
			if ((len & 0xc0) == 0xc0) {
				off += 2;
				break;
			}
			off += 1 + len;
			if (!len)
				break;
		}
		struct {
			__u16 type, class;
			__u32 ttl;
			__u16 rdlen;
		} __attribute__((packed)) rr;
		if (bpf_probe_read_kernel(&rr, sizeof(rr), dns + off))
			return;
		off += sizeof(rr);
		if (bpf_ntohs(rr.type) == 1 && bpf_ntohs(rr.rdlen) == 4) {
			struct st_event *e = dns_event(skb, dns, t, proto, netns, qtype, flags);
			if (!e)
				return;
			bpf_probe_read_kernel(&e->orig.saddr, 4, dns + off);
			e->aux = bpf_ntohl(rr.ttl);
			e->mark = index | (answers << 8);
			submit(e);
			index++;
		}
		off += bpf_ntohs(rr.rdlen);
	}
	/* An error (NXDOMAIN, SERVFAIL ...), an empty answer, or records of other types only:
	 * one event says so, else a failed lookup would look like one never answered. */
	if (!index) {
		struct st_event *e = dns_event(skb, dns, t, proto, netns, qtype, flags);
		if (!e)
			return;
		e->mark = answers << 8;
		e->flags = ST_F_NO_ADDR;
		submit(e);
	}
}

#endif
