/* Chain dispatcher: one TCX program per hook runs the modules of a node's chain, which are
 * loaded as extensions (BPF_PROG_TYPE_EXT) replacing its slot functions (freplace), in slot
 * order while each returns TCX_NEXT, as libxdp's dispatcher does for XDP. The control plane
 * attaches the dispatcher to a veth once; adding or removing a module replaces a slot and
 * flips a bit in disp_mask, which costs no RCU grace period per veth. */
#include "edgebpf.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

#define DISP_SLOTS 64
/* A value an empty slot's ret never has: the branch keeps the slot "changing packet data" to
 * the verifier (extensions that do, the proxy, must replace a function that does). */
#define DISP_NEVER 0x7eadbeef

/* Run statistics per hook and slot while disp_count is set (BPF run time is counted): the
 * kernel counts only the dispatcher itself, not the extensions it jumps to. */
struct disp_stat {
	__u64 runs;
	__u64 ns;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 2 * DISP_SLOTS);
	__type(key, __u32);
	__type(value, struct disp_stat);
} disp_stats SEC(".maps");

/* Which slots run, bit n for slot n, one word per hook (0 ingress, 1 egress). The control
 * plane stores a word at once, so a packet sees the chain before or after a change. */
volatile __u64 disp_mask[2];
/* Nonzero while BPF run time is counted. */
volatile __u32 disp_count;

/* An empty slot passes the packet on. The volatile keeps the compiler from folding the
 * slot's result into the dispatcher. */
#define SLOT(n)								\
	__attribute__((noinline)) int disp_slot##n(struct __sk_buff *skb)	\
	{								\
		volatile int ret = TCX_NEXT;				\
		if (ret == DISP_NEVER)					\
			bpf_skb_pull_data(skb, 0);			\
		return ret;						\
	}

#define SLOTS8(a) SLOT(a##0) SLOT(a##1) SLOT(a##2) SLOT(a##3) SLOT(a##4) SLOT(a##5) SLOT(a##6) SLOT(a##7)
SLOTS8(0) SLOTS8(1) SLOTS8(2) SLOTS8(3) SLOTS8(4) SLOTS8(5) SLOTS8(6) SLOTS8(7)

static __always_inline void account(__u32 key, __u64 t0)
{
	struct disp_stat *st = bpf_map_lookup_elem(&disp_stats, &key);
	if (st) {
		st->runs++;
		st->ns += bpf_ktime_get_ns() - t0;
	}
}

/* Slot 8a+b is the function disp_slot<a><b>. RUN(hook, a, b) runs it if its bit is set and
 * stops the chain once no later bit is. */
#define RUN(hook, a, b)								\
	if (mask & (1ULL << (8 * a + b))) {					\
		int ret;							\
		if (count) {							\
			__u64 t0 = bpf_ktime_get_ns();				\
			ret = disp_slot##a##b(skb);				\
			account((hook) * DISP_SLOTS + 8 * a + b, t0);		\
		} else {							\
			ret = disp_slot##a##b(skb);				\
		}								\
		if (ret != TCX_NEXT)						\
			return ret;						\
	}									\
	if (!(mask >> (8 * a + b) >> 1))					\
		return TCX_NEXT;

#define RUN8(hook, a) RUN(hook, a, 0) RUN(hook, a, 1) RUN(hook, a, 2) RUN(hook, a, 3) \
	RUN(hook, a, 4) RUN(hook, a, 5) RUN(hook, a, 6) RUN(hook, a, 7)

static __always_inline int dispatch(struct __sk_buff *skb, const __u32 hook)
{
	__u64 mask = disp_mask[hook];
	__u32 count = disp_count;

	RUN8(hook, 0) RUN8(hook, 1) RUN8(hook, 2) RUN8(hook, 3)
	RUN8(hook, 4) RUN8(hook, 5) RUN8(hook, 6) RUN8(hook, 7)
	return TCX_NEXT;
}

SEC("tcx/ingress")
int disp_in(struct __sk_buff *skb)
{
	return dispatch(skb, 0);
}

SEC("tcx/egress")
int disp_out(struct __sk_buff *skb)
{
	return dispatch(skb, 1);
}
