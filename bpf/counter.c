/* Packet counter module: counts packets and bytes per bridge-side veth and TC hook in per-CPU
 * counters, then passes the packet on to the next program of the chain. */
#include "edgebpf.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* Hooks as the kernel names them on the bridge-side veth: TC ingress sees packets the service
 * sends, TC egress packets it receives. The control plane turns them into the service's view. */
enum hook { HOOK_INGRESS = 0, HOOK_EGRESS = 1 };

struct counter_key {
	__u32 ifindex;
	__u32 hook;
};

struct counter_value {
	__u64 packets;
	__u64 bytes;
};

/* Entries are created by the control plane when a veth joins; a packet on an interface without
 * an entry is counted in missed instead, so a full map never loses a count silently. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, 1024);
	__type(key, struct counter_key);
	__type(value, struct counter_value);
} counter_counts SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} counter_missed SEC(".maps");

static __always_inline int count(struct __sk_buff *skb, __u32 hook)
{
	struct counter_key key = { .ifindex = skb->ifindex, .hook = hook };
	struct counter_value *v = bpf_map_lookup_elem(&counter_counts, &key);
	if (v) {
		v->packets++;
		v->bytes += skb->len;
	} else {
		stat_inc(&counter_missed, 0);
	}
	return TCX_NEXT;
}

SEC("tcx/ingress")
int counter_in(struct __sk_buff *skb)
{
	return count(skb, HOOK_INGRESS);
}

SEC("tcx/egress")
int counter_out(struct __sk_buff *skb)
{
	return count(skb, HOOK_EGRESS);
}
