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
 * first carries ports, so a datagram's fragments cannot all follow one session. */
#include "edgebpf.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

#define MAX_UPCALL 1514

/* A backend instance: where translated packets go. */
struct px_backend {
	__u32 nsip;     /* namespace IP, network order */
	__u32 ifindex;  /* its bridge-side veth in the node namespace */
	__u8 mac[6];    /* its namespace-side MAC */
	__u8 pad[2];
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

/* A known client: its namespace IP maps to its instance IP and where replies go. */
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

struct px_session {
	__u32 new_saddr;
	__u32 new_daddr;
	__u32 ifindex;
	__u8 mac[6];
	__u8 closing;  /* FINs both ways, or an RST: expire after closing_ns */
	__u8 fin;      /* this direction sent a FIN */
	__u32 in_ifindex; /* the veth this direction's packets arrive on */
	__u64 last_seen;  /* coarse CLOCK_MONOTONIC ns, refreshed once per config.touch_ns */
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
	PX_TOO_BIG = 5,   /* misses too large to send up, dropped */
	PX_SPOOFED = 6,   /* sources not the sending instance's namespace IP, dropped */
	PX_UPCALL_SHED = 7, /* misses over the upcall rate, dropped */
	PX_NO_SESSION = 8,  /* TCP segments other than a SYN without a session, passed on */
	PX_STAT_MAX = 9
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

static __always_inline int upcall(struct __sk_buff *skb, __u64 now)
{
	__u64 len = skb->len;
	if (len > MAX_UPCALL) {
		stat_inc(&px_stats, PX_TOO_BIG);
		return TC_ACT_SHOT;
	}
	if (!upcall_allowed(now)) {
		stat_inc(&px_stats, PX_UPCALL_SHED);
		return TC_ACT_SHOT;
	}
	struct px_upcall meta = { .ifindex = skb->ifindex, .len = len };
	bpf_perf_event_output(skb, &px_upcalls, BPF_F_CURRENT_CPU | (len << 32), &meta, sizeof(meta));
	stat_inc(&px_stats, PX_UPCALL);
	return TC_ACT_SHOT; /* user space owns the packet now and puts it back */
}

static __always_inline int expired(const struct px_session *s, __u8 proto, __u64 now)
{
	__u64 idle = s->closing ? config.closing_ns : (proto == IPPROTO_TCP ? config.tcp_idle_ns : config.udp_idle_ns);
	/* Another CPU may have stamped the session after this one read the clock: a last_seen
	 * ahead of now is fresh, not an underflow to "long ago". */
	__u64 seen = s->last_seen;
	return now > seen && now - seen > idle;
}

#define TCP_FIN 0x01
#define TCP_SYN 0x02
#define TCP_RST 0x04
#define TCP_ACK 0x10

/* close_session records a FIN or an RST on session s, the direction packet p travels in. The
 * other direction's session is keyed by the translated packet's reverse: from s's new
 * destination to its new source, ports swapped. An RST closes both directions; a FIN closes
 * them once the other direction has sent one too. */
static __always_inline void close_session(struct px_session *s, const struct l4 *p, __u8 flags)
{
	struct px_session_key rkey = { .saddr = s->new_daddr, .daddr = s->new_saddr, .sport = p->dport, .dport = p->sport, .proto = p->proto };
	struct px_session *r = bpf_map_lookup_elem(&px_sessions, &rkey);
	if (flags & TCP_FIN)
		s->fin = 1;
	if ((flags & TCP_RST) || (r && r->fin)) {
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

/* rewrite applies a session's translation and hands the packet to the target namespace. The
 * headers are written in place (direct packet access: the verifier's prologue makes a cloned
 * head writable once, before the program runs, for every cloned packet on the hook, also those
 * passed on; TCP's clones are writable without a copy): the two addresses in one 8-byte store, the
 * IPv4 checksum in one, the two MACs in two. The L4 checksum takes the same delta through one
 * bpf_l4_csum_replace, the only helper that knows the skb's checksum state (CHECKSUM_PARTIAL
 * keeps a pseudo-header sum there, CHECKSUM_COMPLETE also needs skb->csum adjusted); it comes
 * last, as it invalidates the packet pointers. */
static __always_inline int rewrite(struct __sk_buff *skb, void *data, struct iphdr *ip, __u8 proto, __u32 l4off,
				   const struct px_session *s)
{
	__u64 addrs = *(const __u64 *)&s->new_saddr; /* new_saddr, new_daddr: adjacent */
	__u32 delta = csum_delta(ip->saddr, ip->daddr, s->new_saddr, s->new_daddr);
	ip->check = ip_check_update(ip->check, delta);
	*(__u64 *)&ip->saddr = addrs; /* saddr, daddr: adjacent */
	/* The packet was addressed to the bridge's MAC: it now comes from there. */
	__u32 old0 = *(__u32 *)data;       /* destination MAC, bytes 0-3 */
	__u16 old1 = *(__u16 *)(data + 4); /* and 4-5 */
	__u64 mac = *(const __u32 *)s->mac | (__u64)*(const __u16 *)(s->mac + 4) << 32;
	*(__u64 *)data = mac | (__u64)(old0 & 0xffff) << 48;
	*(__u32 *)(data + 8) = old0 >> 16 | (__u32)old1 << 16;
	__u64 l4flags = BPF_F_PSEUDO_HDR;
	__u32 csum_off = l4off + (proto == IPPROTO_TCP ? 16 : 6);
	if (proto == IPPROTO_UDP)
		l4flags |= BPF_F_MARK_MANGLED_0; /* a zero UDP checksum means none: keep it zero */
	if (bpf_l4_csum_replace(skb, csum_off, 0, delta, l4flags))
		return TC_ACT_SHOT;
	stat_inc(&px_stats, PX_FORWARD);
	return bpf_redirect_peer(s->ifindex, 0);
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

	struct px_session fwd = { .new_saddr = cl->instance_ip, .new_daddr = be->nsip, .ifindex = be->ifindex,
				  .in_ifindex = skb->ifindex, .last_seen = now };
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
