/* Service proxy module: Oakestra's semantic addressing in the kernel. A packet an instance
 * sends to a service IP (or an instance IP) in the service range starts a session: round-robin
 * over the service's instances, destination rewritten to the chosen instance's namespace IP,
 * source to the sender's instance IP; the reply is translated back (source -> the service IP
 * the client addressed, destination -> the client's namespace IP). Both directions are kept in
 * an LRU session table keyed by the full 5-tuple, with expiry. Translated packets are handed
 * straight to the target instance's namespace (bpf_redirect_peer) with its MAC.
 *
 * What the kernel cannot resolve (an unknown service, a session the table refused) goes to user
 * space with the packet itself (perf event output) and is consumed here: the control plane asks
 * the registry, installs the translation and puts the packet back. Upcalls are rate-limited per
 * CPU (a token bucket); what exceeds the rate is dropped and counted.
 *
 * A packet to the service range must come from the namespace IP of the instance whose veth it
 * arrived on (a known client on that veth, or the endpoint a session expects there): anything
 * else is spoofed, dropped and counted, and never reaches user space.
 *
 * TCP sessions end as conntrack's do: a FIN is recorded per direction, and only when both
 * directions have sent one (or on an RST) does the session expire, after a short linger; a
 * half-closed connection keeps its session. Only a SYN starts a TCP session: any other segment
 * without a session is passed on untranslated, never balanced anew.
 *
 * Fragments to the service range, the first one included, are dropped and counted: only the
 * first carries ports, so a datagram's fragments cannot all follow one session.
 *
 * On a worker of a cluster, a backend on another worker (node_ip set) is reached through the
 * tunnel: the translated packet is wrapped in one UDP datagram to that worker's node IP, port
 * 50103 (Oakestra's wire format, bpf/include/proxy.h) and sent out the underlay link, while the
 * tunnel module has switched the tunnel on (px_tunnel); its replies come back to the tunnel's
 * decapsulation (bpf/tunnel.c), which reverse-translates them from px_sessions. A session the
 * tunnel noted as pass-through (a remote client's) sends replies back through the tunnel
 * untranslated. */
#include "proxy.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

#define MAX_UPCALL 1514

/* A backend instance: where translated packets go. */
struct px_backend {
	__u32 nsip;     /* namespace IP, network order */
	__u32 ifindex;  /* its bridge-side veth in the node namespace */
	__u8 mac[6];    /* its namespace-side MAC */
	__u8 pad[2];
	__u32 node_ip;  /* the worker hosting a remote instance (ifindex 0): tunnel there; 0: local */
};

/* A service IP (or an instance IP, a service of one) the proxy translates. Backends live in
 * px_backends under (ip, gen, slot); the control plane writes a new generation, then swaps
 * this value (hash map updates are atomic), so a packet sees one consistent backend set. */
struct px_service {
	__u32 count;
	__u32 rr;      /* round-robin cursor, advanced atomically */
	__u32 gen;
	__u32 pad;
};

struct px_backend_key {
	__u32 ip;
	__u32 gen;
	__u32 slot;
};

/* What precedes the packet bytes in an upcall. */
struct px_upcall {
	__u32 ifindex; /* the bridge-side veth the packet arrived on */
	__u32 len;     /* packet bytes that follow (perf records may be padded) */
};

struct px_config {
	__u64 tcp_idle_ns;
	__u64 udp_idle_ns;
	__u64 closing_ns;      /* linger of a TCP session after both FINs or an RST */
	__u64 upcall_cost_ns;  /* token bucket: one upcall per this many ns per CPU */
	__u64 upcall_burst_ns; /* and at most this much saved credit */
	__u64 touch_ns;        /* a session's last_seen is refreshed when older than this */
	__u32 service_net;     /* service range, network order */
	__u32 service_mask;
};

volatile const struct px_config config = {
	.tcp_idle_ns = 300ULL * 1000000000ULL,
	.udp_idle_ns = 60ULL * 1000000000ULL,
	.closing_ns = 10ULL * 1000000000ULL,
	.upcall_cost_ns = 1000000ULL,        /* 1000 upcalls/s per CPU */
	.upcall_burst_ns = 1000000000ULL,    /* a burst of 1000 */
	.touch_ns = 1000000000ULL,
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, __u32);
	__type(value, struct px_service);
} px_services SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 262144);
	__type(key, struct px_backend_key);
	__type(value, struct px_backend);
} px_backends SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERF_EVENT_ARRAY);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, sizeof(__u32));
} px_upcalls SEC(".maps");

enum px_stat {
	PX_FORWARD = 0,   /* packets translated */
	PX_NEW = 1,       /* sessions created in the kernel */
	PX_UPCALL = 2,    /* packets sent to user space */
	PX_SESS_FULL = 3, /* session inserts that failed */
	PX_FRAGMENT = 4,  /* fragments to the service range, dropped */
	PX_TOO_BIG = 5,   /* misses too large to send up whole: destination installed, packet dropped */
	PX_SPOOFED = 6,   /* sources not the sending instance's namespace IP, dropped */
	PX_UPCALL_SHED = 7, /* misses over the upcall rate, dropped */
	PX_NO_SESSION = 8,  /* TCP segments other than a SYN without a session, passed on */
	PX_ENCAP = 9,       /* packets tunnelled to another worker */
	PX_NO_TUNNEL = 10,  /* packets for a remote instance without a tunnel, dropped */
	PX_TUN_TOO_BIG = 11, /* packets too long for the underlay once encapsulated, dropped */
	PX_TUN_ERROR = 12,  /* encapsulations the kernel refused, dropped */
	PX_STAT_MAX = 13
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, PX_STAT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} px_stats SEC(".maps");

/* The upcall token bucket of one CPU: credit in nanoseconds, one upcall costs
 * config.upcall_cost_ns. */
struct px_bucket {
	__u64 credit;
	__u64 last;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct px_bucket);
} px_upcall_tb SEC(".maps");

/* upcall_allowed takes one upcall's credit from this CPU's bucket, if it has enough. */
static __always_inline int upcall_allowed(__u64 now)
{
	__u32 zero = 0;
	struct px_bucket *b = bpf_map_lookup_elem(&px_upcall_tb, &zero);
	if (!b)
		return 1;
	__u64 credit = b->credit;
	if (now > b->last)
		credit += now - b->last;
	if (credit > config.upcall_burst_ns)
		credit = config.upcall_burst_ns;
	b->last = now;
	if (credit < config.upcall_cost_ns) {
		b->credit = credit;
		return 0;
	}
	b->credit = credit - config.upcall_cost_ns;
	return 1;
}

/* upcall sends a miss to user space, which installs its destination and puts the packet back.
 * A packet longer than MAX_UPCALL (a GSO packet: a UDP_SEGMENT send is the first packet of
 * its flow) goes up cut to MAX_UPCALL bytes: user space installs the destination from its
 * headers but cannot put it back, so it is dropped and counted, and the flow's next packet
 * finds the service installed. */
static __always_inline int upcall(struct __sk_buff *skb, __u64 now)
{
	__u64 len = skb->len;
	if (!upcall_allowed(now)) {
		stat_inc(&px_stats, PX_UPCALL_SHED);
		return TC_ACT_SHOT;
	}
	if (len > MAX_UPCALL) {
		stat_inc(&px_stats, PX_TOO_BIG);
		len = MAX_UPCALL;
	}
	struct px_upcall meta = { .ifindex = skb->ifindex, .len = len };
	bpf_perf_event_output(skb, &px_upcalls, BPF_F_CURRENT_CPU | (len << 32), &meta, sizeof(meta));
	stat_inc(&px_stats, PX_UPCALL);
	return TC_ACT_SHOT; /* user space owns the packet now and puts it back */
}

static __always_inline int expired(const struct px_session *s, __u8 proto, __u64 now)
{
	return session_expired(s, proto, now, config.tcp_idle_ns, config.udp_idle_ns, config.closing_ns);
}

/* outer_check is the IPv4 header checksum of an outer header as encap writes it: version 4,
 * IHL 5, TOS 0, the total length, ID 0, DF, TTL 64, UDP, the two addresses. */
static __always_inline __u16 outer_check(__u16 tot_len, __u32 saddr, __u32 daddr)
{
	__u32 s = bpf_ntohl(saddr), d = bpf_ntohl(daddr);
	__u32 sum = 0x4500 + tot_len + 0x4000 + (64 << 8 | IPPROTO_UDP) + (s >> 16) + (s & 0xffff) + (d >> 16) + (d & 0xffff);
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return bpf_htons(~sum & 0xffff);
}

/* encap puts the (translated) packet into one UDP datagram to node_ip:TUN_PORT from this
 * worker's node IP and port, outer UDP checksum 0, inner bytes untouched, and sends it out the
 * underlay link; the kernel resolves the next hop's MAC (bpf_redirect_neigh). A GSO packet
 * keeps its segment size (its segments fit the overlay MTU, so each outer one fits the
 * underlay's); a single packet too long for the underlay once wrapped is dropped and counted. */
static __always_inline int encap(struct __sk_buff *skb, __u32 node_ip, __u32 tot_len)
{
	__u32 zero = 0;
	struct px_underlay *t = bpf_map_lookup_elem(&px_tunnel, &zero);
	if (!t || !t->local_ip) {
		stat_inc(&px_stats, PX_NO_TUNNEL);
		return TC_ACT_SHOT;
	}
	__u32 inner = skb->len - ETH_HLEN;
	if (!skb->gso_size && tot_len < inner) {
		/* Ethernet padding after the packet: the datagram carries the packet alone. */
		if (bpf_skb_change_tail(skb, ETH_HLEN + tot_len, 0)) {
			stat_inc(&px_stats, PX_TUN_ERROR);
			return TC_ACT_SHOT;
		}
		inner = tot_len;
	}
	if (!skb->gso_size && inner + TUN_HLEN > t->mtu) {
		stat_inc(&px_stats, PX_TUN_TOO_BIG);
		return TC_ACT_SHOT;
	}
	if (bpf_skb_adjust_room(skb, TUN_HLEN, BPF_ADJ_ROOM_MAC,
				BPF_F_ADJ_ROOM_ENCAP_L3_IPV4 | BPF_F_ADJ_ROOM_ENCAP_L4_UDP | BPF_F_ADJ_ROOM_FIXED_GSO)) {
		stat_inc(&px_stats, PX_TUN_ERROR);
		return TC_ACT_SHOT;
	}
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct iphdr *o = data + ETH_HLEN;
	struct udphdr *u = (void *)(o + 1);
	if ((void *)(u + 1) > data_end)
		return TC_ACT_SHOT;
	__u16 tot = inner + TUN_HLEN;
	*(__u8 *)o = 0x45; /* version 4, IHL 5 */
	o->tos = 0;
	o->tot_len = bpf_htons(tot);
	o->id = 0;
	o->frag_off = bpf_htons(0x4000); /* DF */
	o->ttl = 64;
	o->protocol = IPPROTO_UDP;
	o->saddr = t->local_ip;
	o->daddr = node_ip;
	o->check = outer_check(tot, t->local_ip, node_ip);
	u->source = bpf_htons(TUN_PORT);
	u->dest = bpf_htons(TUN_PORT);
	u->len = bpf_htons(inner + sizeof(struct udphdr));
	u->check = 0; /* none: allowed on IPv4 */
	stat_inc(&px_stats, PX_ENCAP);
	return bpf_redirect_neigh(t->ifindex, 0, 0, 0);
}

/* rewrite applies a session's translation and hands the packet on: into the target namespace
 * (bpf_redirect_peer), or, for an instance on another worker, into the tunnel. A local
 * packet was addressed to the bridge's MAC: it now comes from there, to the target's MAC (two
 * stores, before the checksum helper invalidates the packet pointers). */
static __always_inline int rewrite(struct __sk_buff *skb, void *data, struct iphdr *ip, __u8 proto, __u32 l4off,
				   const struct px_session *s)
{
	__u32 node_ip = s->node_ip;
	if (!node_ip) {
		__u32 old0 = *(__u32 *)data;       /* destination MAC, bytes 0-3 */
		__u16 old1 = *(__u16 *)(data + 4); /* and 4-5 */
		__u64 mac = *(const __u32 *)s->mac | (__u64)*(const __u16 *)(s->mac + 4) << 32;
		*(__u64 *)data = mac | (__u64)(old0 & 0xffff) << 48;
		*(__u32 *)(data + 8) = old0 >> 16 | (__u32)old1 << 16;
	}
	__u32 ifindex = s->ifindex;
	__u32 tot_len = bpf_ntohs(ip->tot_len);
	if (translate(skb, ip, proto, l4off, s))
		return TC_ACT_SHOT;
	stat_inc(&px_stats, PX_FORWARD);
	if (node_ip)
		return encap(skb, node_ip, tot_len);
	return bpf_redirect_peer(ifindex, 0);
}

SEC("tcx/ingress")
int proxy_in(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct l4 p = {};
	if (parse_ipv4(data, data_end, &p) != PARSE_IPV4)
		return TCX_NEXT; /* not IPv4, or malformed: not ours to touch */
	if ((p.daddr & config.service_mask) != config.service_net)
		return TCX_NEXT;
	if (p.proto != IPPROTO_TCP && p.proto != IPPROTO_UDP)
		return TCX_NEXT; /* ICMP and others: the node refuses them (no route) */
	struct iphdr *ip = data + ETH_HLEN;
	if ((void *)(ip + 1) > data_end)
		return TCX_NEXT;
	/* Any fragment, the first (more-fragments set, offset 0) included. */
	if (p.fragment || (ip->frag_off & bpf_htons(0x3fff))) {
		stat_inc(&px_stats, PX_FRAGMENT);
		return TC_ACT_SHOT;
	}
	__u32 l4off = ETH_HLEN + ip->ihl * 4;

	/* CLOCK_MONOTONIC at the kernel tick's resolution (a few ms, far below every timeout):
	 * no clock-source read, which cost ~20 ns a packet in a BPF test run here. */
	__u64 now = bpf_ktime_get_coarse_ns();
	struct px_session_key key = { .saddr = p.saddr, .daddr = p.daddr, .sport = p.sport, .dport = p.dport, .proto = p.proto };
	struct px_session *s = bpf_map_lookup_elem(&px_sessions, &key);
	if (s && !expired(s, p.proto, now)) {
		if (s->in_ifindex != skb->ifindex) {
			stat_inc(&px_stats, PX_SPOOFED);
			return TC_ACT_SHOT;
		}
		/* Stamped once per tick, not per packet: the entry's cache line stays clean (and
		 * shared between CPUs) while a flow runs; expiry is late by at most a tick. */
		if (now > s->last_seen + config.touch_ns)
			s->last_seen = now;
		if (p.tcp_flags & (TCP_FIN | TCP_RST))
			close_session(s, &p, p.tcp_flags);
		return rewrite(skb, data, ip, p.proto, l4off, s);
	}

	/* A new session: the sender must be the known client on this veth, the destination an
	 * installed service with instances, and a TCP segment a SYN. */
	struct px_client *cl = bpf_map_lookup_elem(&px_clients, &p.saddr);
	if (!cl || cl->ifindex != skb->ifindex) {
		stat_inc(&px_stats, PX_SPOOFED);
		return TC_ACT_SHOT;
	}
	if (p.proto == IPPROTO_TCP && (p.tcp_flags & (TCP_SYN | TCP_ACK)) != TCP_SYN) {
		stat_inc(&px_stats, PX_NO_SESSION);
		return TCX_NEXT;
	}
	struct px_service *svc = bpf_map_lookup_elem(&px_services, &p.daddr);
	if (!svc || svc->count == 0)
		return upcall(skb, now);
	__u32 count = svc->count;
	__u32 slot = __sync_fetch_and_add(&svc->rr, 1) % count;
	struct px_backend_key bk = { .ip = p.daddr, .gen = svc->gen, .slot = slot };
	struct px_backend *be = bpf_map_lookup_elem(&px_backends, &bk);
	if (!be)
		return upcall(skb, now);

	/* A remote backend (node_ip set, no veth here) is reached through the tunnel; its
	 * replies come back through it to the tunnel's decapsulation, which reverse-translates
	 * them with rev. */
	struct px_session fwd = { .new_saddr = cl->instance_ip, .new_daddr = be->nsip, .ifindex = be->ifindex,
				  .in_ifindex = skb->ifindex, .node_ip = be->node_ip, .last_seen = now };
	__builtin_memcpy(fwd.mac, be->mac, 6);
	struct px_session rev = { .new_saddr = p.daddr, .new_daddr = p.saddr, .ifindex = cl->ifindex,
				  .in_ifindex = be->ifindex, .last_seen = now };
	__builtin_memcpy(rev.mac, cl->mac, 6);
	struct px_session_key rkey = { .saddr = be->nsip, .daddr = cl->instance_ip, .sport = p.dport, .dport = p.sport, .proto = p.proto };
	if (bpf_map_update_elem(&px_sessions, &key, &fwd, BPF_ANY) ||
	    bpf_map_update_elem(&px_sessions, &rkey, &rev, BPF_ANY)) {
		stat_inc(&px_stats, PX_SESS_FULL);
		bpf_map_delete_elem(&px_sessions, &key);
		return upcall(skb, now);
	}
	stat_inc(&px_stats, PX_NEW);
	return rewrite(skb, data, ip, p.proto, l4off, &fwd);
}
