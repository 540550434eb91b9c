/* Chain dispatcher: one TCX program per hook runs the modules of a node's chain, unchanged TCX
 * programs kept in a program array, in slot order while each returns TCX_NEXT. Slot n is a
 * function that tail-calls entry n of the array: a tail call made in a function replaces only
 * that function's frame, so the module's program returns its verdict to the dispatcher as a
 * call would (x86-64 and arm64 JITs). The control plane attaches the dispatcher to a veth once;
 * adding or removing a module writes one array entry and flips a bit in disp_mask, which costs
 * no RCU grace period per veth. A packet makes one tail call per slot it runs, and the kernel
 * allows 33 per packet: DISP_SLOTS is 32. */
#include "edgebpf.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

#define DISP_SLOTS 32

/* The modules' programs by slot, per hook: a program array takes programs of its owner's type
 * and attach type only, so ingress and egress have one each. */
struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(max_entries, DISP_SLOTS);
	__type(key, __u32);
	__type(value, __u32);
} disp_in_progs SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(max_entries, DISP_SLOTS);
	__type(key, __u32);
	__type(value, __u32);
} disp_out_progs SEC(".maps");

/* Run statistics per hook and slot while disp_count is set (BPF run time is counted): the
 * kernel counts only the dispatcher itself, not the programs it tail-calls. */
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

/* Which slots run, bit n for slot n, one word per hook. The control plane stores a word at
 * once (8 bytes, aligned), so a packet sees the chain before or after a change. */
volatile __u64 disp_mask_in;
volatile __u64 disp_mask_out;
/* Nonzero while BPF run time is counted. */
volatile __u32 disp_count;

/* Slot n of a hook: tail-calls the program in entry n (a constant key, so the JIT patches a
 * direct jump) and returns TCX_NEXT if the entry is empty. Neither the compiler nor the
 * verifier may take the result for that constant, or they drop the dispatcher's verdict check
 * as dead code: the function is global (the verifier takes a global function's result as
 * unknown) and reads its result back through a volatile (clang folds constant results). */
#define SLOT(hook, n)								\
	__attribute__((noinline)) int disp_##hook##_slot##n(struct __sk_buff *skb)	\
	{									\
		volatile int ret = TCX_NEXT;					\
		bpf_tail_call_static(skb, &disp_##hook##_progs, n);		\
		return ret;							\
	}

#define SLOTS8(hook, a) SLOT(hook, a##0) SLOT(hook, a##1) SLOT(hook, a##2) SLOT(hook, a##3) \
	SLOT(hook, a##4) SLOT(hook, a##5) SLOT(hook, a##6) SLOT(hook, a##7)
SLOTS8(in, 0) SLOTS8(in, 1) SLOTS8(in, 2) SLOTS8(in, 3)
SLOTS8(out, 0) SLOTS8(out, 1) SLOTS8(out, 2) SLOTS8(out, 3)

static __always_inline void account(__u32 key, __u64 t0)
{
	struct disp_stat *st = bpf_map_lookup_elem(&disp_stats, &key);
	if (st) {
		st->runs++;
		st->ns += bpf_ktime_get_ns() - t0;
	}
}

/* Slot 8a+b is disp_<hook>_slot<a><b>. RUN(hook, h, a, b) runs it if its bit is set and ends
 * the chain once no later bit is. */
#define RUN(hook, h, a, b)							\
	if (mask & (1ULL << (8 * a + b))) {					\
		int ret;							\
		if (count) {							\
			__u64 t0 = bpf_ktime_get_ns();				\
			ret = disp_##hook##_slot##a##b(skb);			\
			account((h) * DISP_SLOTS + 8 * a + b, t0);		\
		} else {							\
			ret = disp_##hook##_slot##a##b(skb);			\
		}								\
		if (ret != TCX_NEXT)						\
			return ret;						\
	}									\
	if (!(mask >> (8 * a + b) >> 1))					\
		return TCX_NEXT;

#define RUN8(hook, h, a) RUN(hook, h, a, 0) RUN(hook, h, a, 1) RUN(hook, h, a, 2) RUN(hook, h, a, 3) \
	RUN(hook, h, a, 4) RUN(hook, h, a, 5) RUN(hook, h, a, 6) RUN(hook, h, a, 7)

SEC("tcx/ingress")
int disp_in(struct __sk_buff *skb)
{
	__u64 mask = disp_mask_in;
	__u32 count = disp_count;

	RUN8(in, 0, 0) RUN8(in, 0, 1) RUN8(in, 0, 2) RUN8(in, 0, 3)
	return TCX_NEXT;
}

SEC("tcx/egress")
int disp_out(struct __sk_buff *skb)
{
	__u64 mask = disp_mask_out;
	__u32 count = disp_count;

	RUN8(out, 1, 0) RUN8(out, 1, 1) RUN8(out, 1, 2) RUN8(out, 1, 3)
	return TCX_NEXT;
}
