/* Firewall module: an allow list of rules (protocol, source and destination IPv4 prefix, port
 * ranges) with connection tracking, so that replies of allowed flows pass. Unmatched TCP, UDP
 * and ICMP get the configured default; other IPv4 protocols and non-IPv4 frames (ARP, IPv6)
 * always pass. Allowed packets go on to the next program of the chain (TCX_NEXT). */
#include "edgebpf.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

#define MAX_RULES 256

/* fw_rule is one allow rule. Addresses and masks in network byte order, ports in host byte
 * order, inclusive ranges; ICMP rules have full port ranges. */
struct fw_rule {
	__u32 saddr;
	__u32 smask;
	__u32 daddr;
	__u32 dmask;
	__u16 sport_lo;
	__u16 sport_hi;
	__u16 dport_lo;
	__u16 dport_hi;
	__u8 proto;
	__u8 pad[3];
};

struct flow_key {
	__u32 saddr;
	__u32 daddr;
	__u16 sport;
	__u16 dport;
	__u8 proto;
	__u8 pad[3];
};

/* Set before load by the control plane. */
struct fw_config {
	__u64 flow_timeout_ns; /* an idle flow is forgotten after this */
	__u8 default_drop;     /* 1: unmatched TCP/UDP/ICMP is dropped; 0: passed */
	__u8 pad[7];
};

volatile const struct fw_config config = { .flow_timeout_ns = 120ULL * 1000000000ULL, .default_drop = 1 };

/* Rules are double-buffered: the control plane writes the inactive half and its count, then
 * flips active, so a packet sees the old rule set or the new one, never a mix. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2 * MAX_RULES);
	__type(key, __u32);
	__type(value, struct fw_rule);
} fw_rules SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, __u32);
} fw_rule_count SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} fw_active SEC(".maps");

/* Flows allowed by a rule, both directions, with the time they were last seen. LRU: a full
 * table forgets the idlest flow, whose next packet is judged by the rules again. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct flow_key);
	__type(value, __u64);
} fw_flows SEC(".maps");

enum fw_stat { STAT_RULE = 0, STAT_FLOW = 1, STAT_DROP = 2, STAT_OTHER = 3, STAT_DEFAULT_PASS = 4, STAT_MAX = 5 };

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, STAT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} fw_stats SEC(".maps");

static __always_inline int rule_matches(const struct fw_rule *r, const struct l4 *p)
{
	if (r->proto != p->proto)
		return 0;
	if ((p->saddr & r->smask) != r->saddr || (p->daddr & r->dmask) != r->daddr)
		return 0;
	__u16 sport = bpf_ntohs(p->sport), dport = bpf_ntohs(p->dport);
	return sport >= r->sport_lo && sport <= r->sport_hi && dport >= r->dport_lo && dport <= r->dport_hi;
}

static __always_inline int judge(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct l4 p = {};
	int res = parse_ipv4(data, data_end, &p);
	if (res == PARSE_NOT_IPV4)
		return TCX_NEXT;
	if (res == PARSE_IPV4 && p.proto != IPPROTO_TCP && p.proto != IPPROTO_UDP && p.proto != IPPROTO_ICMP) {
		stat_inc(&fw_stats, STAT_OTHER);
		return TCX_NEXT;
	}
	__u64 now = bpf_ktime_get_ns();
	if (res == PARSE_IPV4) {
		struct flow_key k = { .saddr = p.saddr, .daddr = p.daddr, .sport = p.sport, .dport = p.dport, .proto = p.proto };
		__u64 *seen = bpf_map_lookup_elem(&fw_flows, &k);
		/* A stamp from another CPU may be ahead of this CPU's now: that flow is fresh. */
		if (seen && (*seen >= now || now - *seen < config.flow_timeout_ns)) {
			*seen = now;
			stat_inc(&fw_stats, STAT_FLOW);
			return TCX_NEXT;
		}
		__u32 zero = 0;
		__u32 *active = bpf_map_lookup_elem(&fw_active, &zero);
		if (!active)
			goto unmatched;
		__u32 half = *active & 1;
		__u32 *count = bpf_map_lookup_elem(&fw_rule_count, &half);
		if (!count)
			goto unmatched;
		__u32 n = *count;
		for (__u32 i = 0; i < MAX_RULES; i++) {
			if (i >= n)
				break;
			__u32 idx = half * MAX_RULES + i;
			struct fw_rule *r = bpf_map_lookup_elem(&fw_rules, &idx);
			if (!r)
				break;
			if (rule_matches(r, &p)) {
				struct flow_key rev = { .saddr = p.daddr, .daddr = p.saddr, .sport = p.dport, .dport = p.sport, .proto = p.proto };
				bpf_map_update_elem(&fw_flows, &k, &now, BPF_ANY);
				bpf_map_update_elem(&fw_flows, &rev, &now, BPF_ANY);
				stat_inc(&fw_stats, STAT_RULE);
				return TCX_NEXT;
			}
		}
	}
unmatched:
	if (config.default_drop) {
		stat_inc(&fw_stats, STAT_DROP);
		return TC_ACT_SHOT;
	}
	stat_inc(&fw_stats, STAT_DEFAULT_PASS);
	return TCX_NEXT;
}

SEC("tcx/ingress")
int firewall_in(struct __sk_buff *skb)
{
	return judge(skb);
}

SEC("tcx/egress")
int firewall_out(struct __sk_buff *skb)
{
	return judge(skb);
}
