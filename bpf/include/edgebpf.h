/* Definitions shared by edgebpf's BPF programs, the one header they all include: TCX return
 * codes, per-CPU statistics and bounds-checked packet parsing. The programs compile against the
 * headers vendored in this directory only (-nostdinc, see VERSIONS); what those lack is
 * defined here. */
#ifndef EDGEBPF_H
#define EDGEBPF_H

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/pkt_cls.h>
#include <linux/tcp.h>
#include <linux/udp.h>

#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

/* TCX return codes (enum tcx_action_base, Linux 6.6), which the vendored linux/bpf.h (6.1)
 * predates. Defined unconditionally: headers that have the enum make this a compile error
 * rather than a silent second definition. Only TCX_NEXT passes a packet to the next program
 * of the chain; TCX_PASS ends it. */
#define TCX_NEXT -1
#define TCX_PASS 0
#define TCX_DROP 2
#define TCX_REDIRECT 7

/* stat_inc counts one event in a per-CPU array of __u64 counters (each program's *_stats
 * map), indexed by the program's own enum. */
static __always_inline void stat_inc(void *map, __u32 which)
{
	__u64 *v = bpf_map_lookup_elem(map, &which);
	if (v)
		(*v)++;
}

/* Packet parsing. Every accessor checks the packet end before reading, so truncated and
 * malformed frames are refused, never read past. */

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
	PARSE_IPV4 = 0,     /* an IPv4 packet: l4 filled (parse_ipv4), the header found (parse_iphdr) */
	PARSE_NOT_IPV4 = 1, /* ARP, IPv6, anything else: not ours to judge */
	PARSE_MALFORMED = 2 /* an IPv4 EtherType with a truncated or invalid header */
};

/* parse_iphdr finds the IPv4 header of an Ethernet frame and checks the fixed part of it:
 * complete, version 4, IHL 5..15. Options (IHL > 5) are not bounds-checked here: whoever reads
 * past the fixed header checks ip + IHL against the end first (parse_ipv4 does). */
static __always_inline int parse_iphdr(void *data, void *data_end, struct iphdr **ipp)
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
	*ipp = ip;
	return PARSE_IPV4;
}

/* parse_ipv4 reads the Ethernet and IPv4 headers (with options: IHL 5..15) and the first four
 * bytes of a TCP, UDP or ICMP header. */
static __always_inline int parse_ipv4(void *data, void *data_end, struct l4 *out)
{
	struct iphdr *ip;
	int res = parse_iphdr(data, data_end, &ip);
	if (res != PARSE_IPV4)
		return res;
	__u32 ihl = ip->ihl * 4;
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

#endif /* EDGEBPF_H */
