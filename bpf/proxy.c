/* Service proxy module: Oakestra's semantic addressing in the kernel. A packet an instance
 * sends to a service IP (or an instance IP) in the service range starts a session: round-robin
 * over the service's instances, destination rewritten to the chosen instance's namespace IP,
 * source to the sender's instance IP; the reply is translated back (source -> the service IP
 * the client addressed, destination -> the client's namespace IP). Both directions are kept in
 * an LRU session table keyed by the full 5-tuple, with expiry. Translated packets are handed
 * straight to the target instance's namespace (bpf_redirect_peer) with its MAC.
 *
 * What the kernel cannot resolve (an unknown service or client, a session the table refused)
 * goes to user space with the packet itself (perf event output) and is consumed here: the
 * control plane asks the registry, installs the translation and puts the packet back. */
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
	__u8 closing;  /* a FIN or RST was seen: expire soon */
	__u8 pad;
	__u64 last_seen;
};

/* What precedes the packet bytes in an upcall. */
struct px_upcall {
	__u32 ifindex; /* the bridge-side veth the packet arrived on */
	__u32 len;     /* packet bytes that follow (perf records may be padded) */
};

struct px_config {
	__u64 tcp_idle_ns;
	__u64 udp_idle_ns;
	__u64 closing_ns;
	__u32 service_net;  /* service range, network order */
	__u32 service_mask;
};

volatile const struct px_config config = {
	.tcp_idle_ns = 300ULL * 1000000000ULL,
	.udp_idle_ns = 60ULL * 1000000000ULL,
	.closing_ns = 10ULL * 1000000000ULL,
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
	PX_STAT_MAX = 6
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, PX_STAT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} px_stats SEC(".maps");

static __always_inline int upcall(struct __sk_buff *skb)
{
	__u64 len = skb->len;
	if (len > MAX_UPCALL) {
		stat_inc(&px_stats, PX_TOO_BIG);
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

/* rewrite applies a session's translation, fixes the checksums incrementally and hands the
 * packet to the target namespace. */
static __always_inline int rewrite(struct __sk_buff *skb, const struct l4 *p, __u32 l4off, const struct px_session *s)
{
	__u32 old_s = p->saddr, old_d = p->daddr, new_s = s->new_saddr, new_d = s->new_daddr;
	__u32 csum_off = l4off + (p->proto == IPPROTO_TCP ? 16 : 6);
	__u64 l4flags = BPF_F_PSEUDO_HDR | sizeof(__u32);
	if (p->proto == IPPROTO_UDP)
		l4flags |= BPF_F_MARK_MANGLED_0; /* a zero UDP checksum means none: keep it zero */
	__u32 ip_check = ETH_HLEN + offsetof(struct iphdr, check);
	if (bpf_l4_csum_replace(skb, csum_off, old_s, new_s, l4flags) ||
	    bpf_l4_csum_replace(skb, csum_off, old_d, new_d, l4flags) ||
	    bpf_l3_csum_replace(skb, ip_check, old_s, new_s, sizeof(__u32)) ||
	    bpf_l3_csum_replace(skb, ip_check, old_d, new_d, sizeof(__u32)) ||
	    bpf_skb_store_bytes(skb, ETH_HLEN + offsetof(struct iphdr, saddr), &new_s, sizeof(new_s), 0) ||
	    bpf_skb_store_bytes(skb, ETH_HLEN + offsetof(struct iphdr, daddr), &new_d, sizeof(new_d), 0))
		return TC_ACT_SHOT;
	/* The packet was addressed to the bridge's MAC: it now comes from there. */
	__u8 macs[12];
	if (bpf_skb_load_bytes(skb, 0, macs, 6))
		return TC_ACT_SHOT;
	__builtin_memcpy(macs + 6, macs, 6);
	__builtin_memcpy(macs, s->mac, 6);
	if (bpf_skb_store_bytes(skb, 0, macs, sizeof(macs), 0))
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
	if (p.fragment) {
		stat_inc(&px_stats, PX_FRAGMENT);
		return TC_ACT_SHOT;
	}
	struct iphdr *ip = data + ETH_HLEN;
	if ((void *)(ip + 1) > data_end)
		return TCX_NEXT;
	__u32 l4off = ETH_HLEN + ip->ihl * 4;

	__u64 now = bpf_ktime_get_ns();
	struct px_session_key key = { .saddr = p.saddr, .daddr = p.daddr, .sport = p.sport, .dport = p.dport, .proto = p.proto };
	struct px_session *s = bpf_map_lookup_elem(&px_sessions, &key);
	if (s && !expired(s, p.proto, now)) {
		s->last_seen = now;
		if (p.tcp_flags & 0x05) /* FIN or RST */
			s->closing = 1;
		struct px_session copy = *s;
		return rewrite(skb, &p, l4off, &copy);
	}

	/* A new session: the sender must be a known client, the destination an installed
	 * service with instances. */
	struct px_client *cl = bpf_map_lookup_elem(&px_clients, &p.saddr);
	struct px_service *svc = bpf_map_lookup_elem(&px_services, &p.daddr);
	if (!cl || !svc || svc->count == 0)
		return upcall(skb);
	__u32 count = svc->count;
	__u32 slot = __sync_fetch_and_add(&svc->rr, 1) % count;
	struct px_backend_key bk = { .ip = p.daddr, .gen = svc->gen, .slot = slot };
	struct px_backend *be = bpf_map_lookup_elem(&px_backends, &bk);
	if (!be)
		return upcall(skb);

	struct px_session fwd = { .new_saddr = cl->instance_ip, .new_daddr = be->nsip, .ifindex = be->ifindex, .last_seen = now };
	__builtin_memcpy(fwd.mac, be->mac, 6);
	struct px_session rev = { .new_saddr = p.daddr, .new_daddr = p.saddr, .ifindex = cl->ifindex, .last_seen = now };
	__builtin_memcpy(rev.mac, cl->mac, 6);
	struct px_session_key rkey = { .saddr = be->nsip, .daddr = cl->instance_ip, .sport = p.dport, .dport = p.sport, .proto = p.proto };
	if (bpf_map_update_elem(&px_sessions, &key, &fwd, BPF_ANY) ||
	    bpf_map_update_elem(&px_sessions, &rkey, &rev, BPF_ANY)) {
		stat_inc(&px_stats, PX_SESS_FULL);
		bpf_map_delete_elem(&px_sessions, &key);
		return upcall(skb);
	}
	stat_inc(&px_stats, PX_NEW);
	return rewrite(skb, &p, l4off, &fwd);
}
