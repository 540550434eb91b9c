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
 * unknown) and reads its result back through a volatile (clang folds constant results).
 * Slots are listed by their decimal number, which is at once the function's name, the mask
 * bit, the array key and the statistics key: a slot number built by pasting digits would
 * name one number and tail-call another (8a+b against 10a+b, or an octal 0a). */
#define SLOT(hook, n)								\
	__attribute__((noinline)) int disp_##hook##_slot##n(struct __sk_buff *skb)	\
	{									\
		volatile int ret = TCX_NEXT;					\
		bpf_tail_call_static(skb, &disp_##hook##_progs, n);		\
		return ret;							\
	}

#define EACH_SLOT(X, ...)							\
	X(__VA_ARGS__, 0) X(__VA_ARGS__, 1) X(__VA_ARGS__, 2) X(__VA_ARGS__, 3)		\
	X(__VA_ARGS__, 4) X(__VA_ARGS__, 5) X(__VA_ARGS__, 6) X(__VA_ARGS__, 7)		\
	X(__VA_ARGS__, 8) X(__VA_ARGS__, 9) X(__VA_ARGS__, 10) X(__VA_ARGS__, 11)	\
	X(__VA_ARGS__, 12) X(__VA_ARGS__, 13) X(__VA_ARGS__, 14) X(__VA_ARGS__, 15)	\
	X(__VA_ARGS__, 16) X(__VA_ARGS__, 17) X(__VA_ARGS__, 18) X(__VA_ARGS__, 19)	\
	X(__VA_ARGS__, 20) X(__VA_ARGS__, 21) X(__VA_ARGS__, 22) X(__VA_ARGS__, 23)	\
	X(__VA_ARGS__, 24) X(__VA_ARGS__, 25) X(__VA_ARGS__, 26) X(__VA_ARGS__, 27)	\
	X(__VA_ARGS__, 28) X(__VA_ARGS__, 29) X(__VA_ARGS__, 30) X(__VA_ARGS__, 31)

EACH_SLOT(SLOT, in)
EACH_SLOT(SLOT, out)

_Static_assert(DISP_SLOTS == 32, "EACH_SLOT lists 32 slots");

static __always_inline void account(__u32 key, __u64 t0)
{
	struct disp_stat *st = bpf_map_lookup_elem(&disp_stats, &key);
	if (st) {
		st->runs++;
		st->ns += bpf_ktime_get_ns() - t0;
	}
}

/* RUN(hook, h, n) runs slot n if its bit is set and ends the chain once no later bit is. */
#define RUN(hook, h, n)								\
	if (mask & (1ULL << (n))) {						\
		int ret;							\
		if (count) {							\
			__u64 t0 = bpf_ktime_get_ns();				\
			ret = disp_##hook##_slot##n(skb);			\
			account((h) * DISP_SLOTS + (n), t0);			\
		} else {							\
			ret = disp_##hook##_slot##n(skb);			\
		}								\
		if (ret != TCX_NEXT)						\
			return ret;						\
	}									\
	if (!(mask >> (n) >> 1))						\
		return TCX_NEXT;

SEC("tcx/ingress")
int disp_in(struct __sk_buff *skb)
{
	__u64 mask = disp_mask_in;
	__u32 count = disp_count;

	EACH_SLOT(RUN, in, 0)
	return TCX_NEXT;
}

SEC("tcx/egress")
int disp_out(struct __sk_buff *skb)
{
	__u64 mask = disp_mask_out;
	__u32 count = disp_count;

	EACH_SLOT(RUN, out, 1)
	return TCX_NEXT;
}
