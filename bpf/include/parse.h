/* Bounds-checked header parsing shared by edgebpf's TC programs. Every accessor checks the
 * packet end before reading, so truncated and malformed frames are refused, never read past. */
#ifndef EDGEBPF_PARSE_H
#define EDGEBPF_PARSE_H

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/tcp.h>
#include <linux/udp.h>

#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

/* l4 is what a module needs of an IPv4 packet: addresses, protocol and ports (0 for ICMP and
 * for fragments after the first, which carry no L4 header). Addresses and ports are in network
 * byte order. */
struct l4 {
	__u32 saddr;
	__u32 daddr;
	__u16 sport;
	__u16 dport;
	__u8 proto;
	__u8 tcp_flags;   /* TCP flags byte (FIN 0x01, SYN 0x02, RST 0x04, ACK 0x10), else 0 */
	__u8 fragment;    /* 1 for a fragment after the first */
	__u8 pad;
};

enum parse_result {
	PARSE_IPV4 = 0,     /* an IPv4 packet, l4 filled */
	PARSE_NOT_IPV4 = 1, /* ARP, IPv6, anything else: not ours to judge */
	PARSE_MALFORMED = 2 /* an IPv4 EtherType with a truncated or invalid header */
};

/* parse_ipv4 reads the Ethernet and IPv4 headers (with options: IHL 5..15) and the first four
 * bytes of a TCP, UDP or ICMP header. */
static __always_inline int parse_ipv4(void *data, void *data_end, struct l4 *out)
{
	struct ethhdr *eth = data;
	if ((void *)(eth + 1) > data_end)
		return PARSE_MALFORMED;
	if (eth->h_proto != bpf_htons(ETH_P_IP))
		return PARSE_NOT_IPV4;
	struct iphdr *ip = (void *)(eth + 1);
	if ((void *)(ip + 1) > data_end)
		return PARSE_MALFORMED;
	__u32 ihl = ip->ihl * 4;
	if (ip->version != 4 || ihl < sizeof(*ip))
		return PARSE_MALFORMED;
	if ((void *)ip + ihl > data_end)
		return PARSE_MALFORMED;
	out->saddr = ip->saddr;
	out->daddr = ip->daddr;
	out->proto = ip->protocol;
	out->sport = 0;
	out->dport = 0;
	out->tcp_flags = 0;
	out->pad = 0;
	out->fragment = (ip->frag_off & bpf_htons(0x1fff)) != 0;
	if (out->fragment)
		return PARSE_IPV4;
	void *l4h = (void *)ip + ihl;
	switch (ip->protocol) {
	case IPPROTO_TCP: {
		struct tcphdr *tcp = l4h;
		if ((void *)(tcp + 1) > data_end)
			return PARSE_MALFORMED;
		out->sport = tcp->source;
		out->dport = tcp->dest;
		out->tcp_flags = ((__u8 *)tcp)[13];
		break;
	}
	case IPPROTO_UDP: {
		struct udphdr *udp = l4h;
		if ((void *)(udp + 1) > data_end)
			return PARSE_MALFORMED;
		out->sport = udp->source;
		out->dport = udp->dest;
		break;
	}
	case IPPROTO_ICMP: {
		/* type, code, checksum: linux/icmp.h drags in libc headers, so no struct here. */
		if (l4h + 4 > data_end)
			return PARSE_MALFORMED;
		break;
	}
	}
	return PARSE_IPV4;
}

#endif /* EDGEBPF_PARSE_H */
