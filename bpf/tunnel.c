/* Tunnel module: the receiving end of Oakestra's tunnel between workers, in the kernel, on the
 * TCX ingress of the worker's underlay link. A datagram to this worker's node IP, UDP port
 * TUN_PORT, from a known peer carries one IPv4 packet, unchanged, as its whole payload
 * (the sending end is the proxy's encap, bpf/proxy.c). The program strips the outer headers
 * and delivers the inner packet:
 *
 *  - a reply to a session of this worker's proxy (inner 5-tuple in px_sessions): reverse-
 *    translated as the proxy does, then into the client's namespace;
 *  - else a packet to a local instance's namespace IP: into its namespace as it is. When it
 *    comes from an instance IP (a client on another worker), the reverse direction is noted
 *    as a pass-through session, so the proxy tunnels the instance's replies back to that
 *    worker unchanged: only the worker holding the session translates, as in Oakestra.
 *
 * Delivery is bpf_redirect_peer into the instance's namespace, addressed from the bridge's MAC
 * to the instance's. What is not a well-formed tunnel packet for a local target is dropped and
 * counted, never delivered: an unknown peer, a truncated or oversized datagram, an outer
 * fragment, a payload that is not IPv4, an inner destination no one here owns. Packets that
 * are not UDP to TUN_PORT on this worker's node IP pass on untouched (ARP, other traffic).
 *
 * The object declares the proxy's px_clients and px_sessions (bpf/include/proxy.h); the
 * module loads it with the proxy's maps in their place. */
#include "proxy.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

struct tun_config {
	__u64 tcp_idle_ns; /* the proxy's timeouts, for its sessions */
	__u64 udp_idle_ns;
	__u64 closing_ns;
	__u32 local_ip;     /* this worker's node IP, network order */
	__u32 service_net;  /* service range, network order */
	__u32 service_mask;
	__u32 mtu;          /* overlay MTU: the longest inner packet */
	__u8 bridge_mac[6]; /* delivered packets come from the bridge */
	__u8 pad[2];
};

volatile const struct tun_config config = {
	.tcp_idle_ns = 300ULL * 1000000000ULL,
	.udp_idle_ns = 60ULL * 1000000000ULL,
	.closing_ns = 10ULL * 1000000000ULL,
	.mtu = 1450,
};

/* The other workers' node IPs: tunnel packets from anyone else are dropped. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u32);
	__type(value, __u32);
} tun_peers SEC(".maps");

enum tun_stat {
	TUN_DELIVERED = 0,    /* inner packets delivered as they came */
	TUN_REVERSED = 1,     /* inner packets reverse-translated (replies), delivered */
	TUN_UNKNOWN_PEER = 2, /* from a node IP that is no peer, dropped */
	TUN_TRUNCATED = 3,    /* shorter than their headers say, dropped */
	TUN_OVERSIZED = 4,    /* inner packet beyond the overlay MTU, dropped */
	TUN_NOT_IPV4 = 5,     /* payload not an IPv4 packet, dropped */
	TUN_NO_TARGET = 6,    /* inner destination not a local instance or session, dropped */
	TUN_FRAGMENT = 7,     /* outer fragments to the tunnel port, dropped */
	TUN_ERROR = 8,        /* decapsulations the kernel refused, dropped */
	TUN_STAT_MAX = 9
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, TUN_STAT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} tun_stats SEC(".maps");

static __always_inline int drop(__u32 why)
{
	stat_inc(&tun_stats, why);
	return TC_ACT_SHOT;
}

static __always_inline int expired(const struct px_session *s, __u8 proto, __u64 now)
{
	return session_expired(s, proto, now, config.tcp_idle_ns, config.udp_idle_ns, config.closing_ns);
}

/* check_outer validates the outer headers of a packet to this worker's tunnel port and
 * returns how many bytes follow the Ethernet header up to the inner packet, or a negative
 * tun_stat for a drop. ip is bounds-checked by the caller (the fixed header). */
static __always_inline int check_outer(struct __sk_buff *skb, void *data, void *data_end, struct iphdr *ip)
{
	__u32 ihl = ip->ihl * 4;
	struct udphdr *u = (void *)ip + ihl;
	if ((void *)(u + 1) > data_end)
		return -TUN_TRUNCATED;
	__u32 avail = skb->len - ETH_HLEN; /* the linear part may be shorter than the packet */
	__u32 tot = bpf_ntohs(ip->tot_len);
	__u32 ulen = bpf_ntohs(u->len);
	if (tot > avail || ulen != tot - ihl || ulen < sizeof(*u) + sizeof(struct iphdr))
		return -TUN_TRUNCATED;
	return ihl + sizeof(*u);
}

/* check_inner validates the inner IPv4 header, whose length is inner_len bytes. */
static __always_inline int check_inner(struct __sk_buff *skb, struct iphdr *in, void *data_end, __u32 inner_len)
{
	if ((void *)(in + 1) > data_end)
		return -TUN_TRUNCATED;
	if (in->version != 4 || in->ihl < 5)
		return -TUN_NOT_IPV4;
	__u32 tot = bpf_ntohs(in->tot_len);
	if (tot != inner_len)
		return -TUN_TRUNCATED;
	/* A GSO packet's segments each carry at most gso_size bytes of payload. */
	if (!skb->gso_size && tot > config.mtu)
		return -TUN_OVERSIZED;
	return 0;
}

/* pass_through notes that replies to packet p (which came through the tunnel from node_ip to
 * a local instance) go back through the tunnel unchanged: the proxy on the instance's veth
 * finds the session and tunnels them. A FIN or RST seen here counts for the session's other
 * direction. */
static __always_inline void pass_through(const struct l4 *p, __u32 node_ip, __u32 ifindex, __u64 now)
{
	struct px_session_key rkey = { .saddr = p->daddr, .daddr = p->saddr, .sport = p->dport, .dport = p->sport, .proto = p->proto };
	struct px_session *r = bpf_map_lookup_elem(&px_sessions, &rkey);
	if (!r || expired(r, p->proto, now) || r->node_ip != node_ip) {
		struct px_session ns = { .new_saddr = p->daddr, .new_daddr = p->saddr, .in_ifindex = ifindex,
					 .node_ip = node_ip, .last_seen = now };
		bpf_map_update_elem(&px_sessions, &rkey, &ns, BPF_ANY);
		r = bpf_map_lookup_elem(&px_sessions, &rkey);
		if (!r)
			return;
	} else if (now > r->last_seen + 1000000000ULL) {
		r->last_seen = now;
	}
	if (p->tcp_flags & TCP_FIN)
		r->fin |= PX_FIN_PEER;
	if ((p->tcp_flags & TCP_RST) || ((p->tcp_flags & TCP_FIN) && (r->fin & PX_FIN_HERE)))
		r->closing = 1;
}

/* from_bridge addresses a frame to dst from the bridge's MAC (the configuration is read byte
 * by byte: a plain copy from it would be folded to the compiled-in zeros). */
static __always_inline void from_bridge(void *data, const __u8 *dst)
{
	__builtin_memcpy(data, dst, 6);
	__u8 *src = data + 6;
#pragma unroll
	for (int i = 0; i < 6; i++)
		src[i] = config.bridge_mac[i];
}

/* deliver sends the decapsulated packet (Ethernet header at data) to a local target. */
static __always_inline int deliver(struct __sk_buff *skb, __u32 node_ip, __u64 now)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct l4 p = {};
	if (parse_ipv4(data, data_end, &p) != PARSE_IPV4)
		return drop(TUN_TRUNCATED);
	struct iphdr *ip = data + ETH_HLEN;
	if ((void *)(ip + 1) > data_end)
		return drop(TUN_TRUNCATED);
	int l4 = (p.proto == IPPROTO_TCP || p.proto == IPPROTO_UDP) && !p.fragment && !(ip->frag_off & bpf_htons(0x2000));

	/* A reply is addressed to an instance IP (the service range); a request to a namespace IP. */
	if (l4 && (p.daddr & config.service_mask) == config.service_net) {
		struct px_session_key key = { .saddr = p.saddr, .daddr = p.daddr, .sport = p.sport, .dport = p.dport, .proto = p.proto };
		struct px_session *s = bpf_map_lookup_elem(&px_sessions, &key);
		if (s && !s->node_ip && s->ifindex && !expired(s, p.proto, now)) {
			if (now > s->last_seen + 1000000000ULL)
				s->last_seen = now;
			if (p.tcp_flags & (TCP_FIN | TCP_RST))
				close_session(s, &p, p.tcp_flags);
			__u32 ifindex = s->ifindex;
			from_bridge(data, s->mac);
			if (translate(skb, ip, p.proto, ETH_HLEN + ip->ihl * 4, s))
				return drop(TUN_ERROR);
			stat_inc(&tun_stats, TUN_REVERSED);
			return bpf_redirect_peer(ifindex, 0);
		}
	}
	struct px_client *cl = bpf_map_lookup_elem(&px_clients, &p.daddr);
	if (!cl)
		return drop(TUN_NO_TARGET);
	if (l4 && (p.saddr & config.service_mask) == config.service_net)
		pass_through(&p, node_ip, cl->ifindex, now);
	__u32 ifindex = cl->ifindex;
	from_bridge(data, cl->mac);
	stat_inc(&tun_stats, TUN_DELIVERED);
	return bpf_redirect_peer(ifindex, 0);
}

SEC("tcx/ingress")
int tunnel_decap(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct iphdr *ip;
	if (parse_iphdr(data, data_end, &ip) != PARSE_IPV4)
		return TCX_NEXT;
	if (ip->protocol != IPPROTO_UDP || ip->daddr != config.local_ip)
		return TCX_NEXT;
	__u32 ihl = ip->ihl * 4;
	if (ip->frag_off & bpf_htons(0x1fff))
		return TCX_NEXT; /* a later fragment: no port to tell whose it is */
	struct udphdr *u = (void *)ip + ihl;
	if ((void *)(u + 1) > data_end)
		return TCX_NEXT; /* too short to be addressed to the tunnel port */
	if (u->dest != bpf_htons(TUN_PORT))
		return TCX_NEXT;
	__u32 node_ip = ip->saddr;
	if (!bpf_map_lookup_elem(&tun_peers, &node_ip))
		return drop(TUN_UNKNOWN_PEER);
	if (ip->frag_off & bpf_htons(0x2000))
		return drop(TUN_FRAGMENT);
	int hlen = check_outer(skb, data, data_end, ip);
	if (hlen < 0)
		return drop(-hlen);
	if (hlen > 60 + 8)
		return drop(TUN_TRUNCATED);
	__u32 inner_len = bpf_ntohs(u->len) - sizeof(*u);
	struct iphdr *in = (void *)ip + hlen;
	int res = check_inner(skb, in, data_end, inner_len);
	if (res < 0)
		return drop(-res);
	if (bpf_skb_adjust_room(skb, -hlen, BPF_ADJ_ROOM_MAC, BPF_F_ADJ_ROOM_FIXED_GSO))
		return drop(TUN_ERROR);
	return deliver(skb, node_ip, bpf_ktime_get_coarse_ns());
}
