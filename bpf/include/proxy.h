/* What the service proxy (proxy.c) shares with the tunnel's decapsulation (tunnel.c): the
 * session and client tables with their value layouts, the tunnel switch, and the translation
 * and session-ending code both run. Each object declares these maps; the tunnel module loads
 * its object with the proxy's maps in their place (cilium/ebpf MapReplacements), so both
 * programs work on one table. Oakestra's wire format: the translated IPv4 packet, unchanged,
 * as the whole payload of one UDP datagram to the worker's node IP, port TUN_PORT. */
#ifndef EDGEBPF_PROXY_H
#define EDGEBPF_PROXY_H

#include "edgebpf.h"

#define TUN_PORT 50103
/* Outer IPv4 (no options) and UDP headers. */
#define TUN_HLEN (sizeof(struct iphdr) + sizeof(struct udphdr))

/* A known client: an instance of this worker; its namespace IP maps to its instance IP and
 * where packets to it go. */
struct px_client {
	__u32 instance_ip;
	__u32 ifindex;
	__u8 mac[6];
	__u8 pad[2];
};

struct px_session_key {
	__u32 saddr;
	__u32 daddr;
	__u16 sport;
	__u16 dport;
	__u8 proto;
	__u8 pad[3];
};

/* fin bits: this direction sent a FIN, as the proxy saw it; the other direction sent one, as
 * the tunnel saw it (a session whose other direction arrives through the tunnel). */
#define PX_FIN_HERE 1
#define PX_FIN_PEER 2

struct px_session {
	__u32 new_saddr;
	__u32 new_daddr;
	__u32 ifindex;    /* deliver to this veth's peer (a local instance); 0 when node_ip is set */
	__u8 mac[6];
	__u8 closing;     /* FINs both ways, or an RST: expire after closing_ns */
	__u8 fin;         /* PX_FIN_* bits */
	__u32 in_ifindex; /* the veth this direction's packets arrive on */
	__u32 node_ip;    /* a remote worker's node IP: tunnel the packet there; 0: local */
	__u64 last_seen;  /* coarse CLOCK_MONOTONIC ns, refreshed once per touch_ns */
};

/* The tunnel switch, written by the tunnel module: while local_ip is 0 the proxy has no
 * tunnel and drops (and counts) packets for remote instances. */
struct px_underlay {
	__u32 local_ip; /* this worker's node IP, network order */
	__u32 ifindex;  /* its underlay link */
	__u32 mtu;      /* the underlay's MTU: an outer datagram may be at most this long */
	__u32 pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, __u32);
	__type(value, struct px_client);
} px_clients SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 262144);
	__type(key, struct px_session_key);
	__type(value, struct px_session);
} px_sessions SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct px_underlay);
} px_tunnel SEC(".maps");

#define TCP_FIN 0x01
#define TCP_SYN 0x02
#define TCP_RST 0x04
#define TCP_ACK 0x10

static __always_inline int session_expired(const struct px_session *s, __u8 proto, __u64 now, __u64 tcp_idle,
					   __u64 udp_idle, __u64 closing)
{
	__u64 idle = s->closing ? closing : (proto == IPPROTO_TCP ? tcp_idle : udp_idle);
	/* Another CPU may have stamped the session after this one read the clock: a last_seen
	 * ahead of now is fresh, not an underflow to "long ago". */
	__u64 seen = s->last_seen;
	return now > seen && now - seen > idle;
}

/* close_session records a FIN or an RST on session s, the direction packet p travels in. The
 * other direction's session is keyed by the translated packet's reverse: from s's new
 * destination to its new source, ports swapped. An RST closes both directions; a FIN closes
 * them once the other direction has sent one too (seen here, or by the tunnel for a session
 * whose other direction is on another worker). */
static __always_inline void close_session(struct px_session *s, const struct l4 *p, __u8 flags)
{
	struct px_session_key rkey = { .saddr = s->new_daddr, .daddr = s->new_saddr, .sport = p->dport, .dport = p->sport, .proto = p->proto };
	struct px_session *r = bpf_map_lookup_elem(&px_sessions, &rkey);
	if (flags & TCP_FIN)
		s->fin |= PX_FIN_HERE;
	if ((flags & TCP_RST) || (r && r->fin) || ((flags & TCP_FIN) && (s->fin & PX_FIN_PEER))) {
		s->closing = 1;
		if (r)
			r->closing = 1;
	}
}

/* Checksums: one delta for both addresses. csum_delta is sum(new) - sum(old) of the two
 * 32-bit address words in ones' complement arithmetic (RFC 1624), folded to 32 bits: what
 * bpf_csum_diff would return, without the helper call. The sum is independent of byte order,
 * so the words are used as loaded from memory. */
static __always_inline __u32 csum_delta(__u32 old_s, __u32 old_d, __u32 new_s, __u32 new_d)
{
	__u64 acc = (__u64)new_s + new_d + (__u32)~old_s + (__u32)~old_d;
	acc = (acc & 0xffffffff) + (acc >> 32);
	acc = (acc & 0xffffffff) + (acc >> 32);
	return acc;
}

/* ip_check_update applies a delta to an IPv4 header checksum: ~(~check + delta), folded to
 * 16 bits. */
static __always_inline __u16 ip_check_update(__u16 check, __u32 delta)
{
	__u32 sum = (__u16)~check;
	sum += (delta & 0xffff) + (delta >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return ~sum;
}

/* translate rewrites the addresses to a session's and fixes both checksums. The headers are
 * written in place (direct packet access: the verifier's prologue makes a cloned head
 * writable once, before the program runs, for every cloned packet on the hook, also those
 * passed on; TCP's clones are writable without a copy): the two addresses in one 8-byte
 * store, the IPv4 checksum in one. The L4 checksum takes the same delta through one
 * bpf_l4_csum_replace, the only helper that knows the skb's checksum state (CHECKSUM_PARTIAL
 * keeps a pseudo-header sum there, CHECKSUM_COMPLETE also needs skb->csum adjusted); it comes
 * last, as it invalidates the packet pointers. Returns 0, or -1 if the helper failed. */
static __always_inline int translate(struct __sk_buff *skb, struct iphdr *ip, __u8 proto, __u32 l4off,
				     const struct px_session *s)
{
	__u64 addrs = *(const __u64 *)&s->new_saddr; /* new_saddr, new_daddr: adjacent */
	__u32 delta = csum_delta(ip->saddr, ip->daddr, s->new_saddr, s->new_daddr);
	ip->check = ip_check_update(ip->check, delta);
	*(__u64 *)&ip->saddr = addrs; /* saddr, daddr: adjacent */
	__u64 l4flags = BPF_F_PSEUDO_HDR;
	__u32 csum_off = l4off + (proto == IPPROTO_TCP ? 16 : 6);
	if (proto == IPPROTO_UDP)
		l4flags |= BPF_F_MARK_MANGLED_0; /* a zero UDP checksum means none: keep it zero */
	if (bpf_l4_csum_replace(skb, csum_off, 0, delta, l4flags))
		return -1;
	return 0;
}

#endif /* EDGEBPF_PROXY_H */
