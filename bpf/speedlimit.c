/* The speed-limit responder of the Weinhold thesis (reference.md §4) as an XDP program.
 *
 * Protocol: a UDP datagram to the configured port whose payload is exactly two 32-bit fields in
 * network byte order, OP then VALUE. GET_SPEED_LIMIT (4) counts a car and is answered in place
 * with REPLY (3) and the current limit in km/h as VALUE, the MACs, IPs and ports swapped, and
 * XDP_TX. OUT_OF_RANGE (5) uncounts a car (never below 0) and is dropped: it gets no answer.
 * Everything else is XDP_PASS, so the kernel's stack (and the server's socket behind it) sees
 * it exactly as if no program were attached: a malformed request is never answered here.
 *
 * Checks, in order (the thesis's five, with the structural ones a parser needs in between):
 *   1. Ethernet type IPv4                         else PASS  (stat NOT_IPV4)
 *   -  IPv4 header complete, version 4, IHL 5..15 else PASS  (MALFORMED)
 *   2. protocol UDP                               else PASS  (NOT_UDP)
 *   -  not a fragment                             else PASS  (FRAGMENT)
 *   -  UDP header complete (found at IHL*4, so options are parsed, not guessed)
 *   3. destination port = config.port             else PASS  (OTHER_PORT)
 *   -  no IPv4 options                            else PASS  (OPTIONS): the stack processes
 *      options (it refuses source routes, records routes); echoing them back would be wrong
 *   4. UDP length 16 (8-byte payload), IPv4 total length 36, frame holds both
 *                                                 else PASS  (SIZE; TRUNCATED)
 *   5. OP is GET_SPEED_LIMIT or OUT_OF_RANGE      else PASS  (UNKNOWN_OP)
 *   -  IPv4 header checksum valid, UDP checksum valid (or 0, or the pseudo-header seed of a
 *      local sender that left the checksum to offload, see csum_ok)  else PASS (CHECKSUM)
 *   -  unicast source and destination (a reply to a group address would be wrong)
 *                                                 else PASS  (ADDRESS)
 *
 * The reply's IPv4 checksum needs no update: swapping the two addresses leaves the one's
 * complement sum unchanged, and nothing else in the IPv4 header changes. The UDP checksum is
 * computed in full over pseudo-header, header and the 8 payload bytes, never derived from the
 * request's, so the reply is right whatever checksum state the request arrived in.
 *
 * State lives in three array maps, each with exactly one writer, so user space and the kernel
 * never race on a value (the thesis's caveat, its section 4.2): `sl_cars` is written only here,
 * with atomic instructions (fetch-and-add, compare-and-exchange), and only read by user space;
 * `sl_limit` is written only by user space (the mixed configuration's timer) and only read here;
 * `sl_stats` is per-CPU, written here without atomics, summed by user space.
 */
#include "edgebpf.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* The protocol's operations. */
enum speedlimit_op {
	SPEEDLIMIT_REPLY = 3,
	SPEEDLIMIT_GET_SPEED_LIMIT = 4,
	SPEEDLIMIT_OUT_OF_RANGE = 5,
};

/* The UDP payload: both fields in network byte order. */
struct speedlimit_msg {
	__be32 op;
	__be32 value;
};

/* Where the limit in a reply comes from. */
enum speedlimit_mode {
	SPEEDLIMIT_MODE_LOOKUP = 0,  /* the mixed configuration: user space writes `sl_limit` */
	SPEEDLIMIT_MODE_COMPUTE = 1, /* the eBPF-only configuration: computed per request here */
};

/* The program's configuration, set by the loader before the program is loaded. The verifier
 * sees the frozen values, so the branch of the mode not configured is dead code and is not
 * even JIT-compiled (the thesis removed it with the preprocessor). */
struct speedlimit_config {
	__u16 port; /* UDP port, host byte order */
	__u16 pad;
	enum speedlimit_mode mode;
};

volatile const struct speedlimit_config config = {
	.port = 5300,
	.mode = SPEEDLIMIT_MODE_COMPUTE,
};

/* What the program did with a frame: one per-CPU counter each. */
enum speedlimit_stat {
	SPEEDLIMIT_STAT_REPLIED = 0,       /* GET_SPEED_LIMIT answered with XDP_TX */
	SPEEDLIMIT_STAT_LEFT,              /* OUT_OF_RANGE: a car uncounted, dropped */
	SPEEDLIMIT_STAT_LEFT_EMPTY,        /* OUT_OF_RANGE with no car counted: dropped */
	SPEEDLIMIT_STAT_CSUM_OFFLOADED,    /* accepted with a checksum left to offload */
	SPEEDLIMIT_STAT_NOT_IPV4,          /* passed: */
	SPEEDLIMIT_STAT_MALFORMED,
	SPEEDLIMIT_STAT_NOT_UDP,
	SPEEDLIMIT_STAT_FRAGMENT,
	SPEEDLIMIT_STAT_OTHER_PORT,
	SPEEDLIMIT_STAT_OPTIONS,
	SPEEDLIMIT_STAT_TRUNCATED,
	SPEEDLIMIT_STAT_SIZE,
	SPEEDLIMIT_STAT_UNKNOWN_OP,
	SPEEDLIMIT_STAT_CHECKSUM,
	SPEEDLIMIT_STAT_ADDRESS,
	SPEEDLIMIT_STAT_CONTENDED,         /* OUT_OF_RANGE dropped uncounted: compare-and-exchange
	                                    * lost SPEEDLIMIT_CAS_TRIES times in a row */
	SPEEDLIMIT_STAT_NO_STATE,          /* a map lookup failed (cannot happen for arrays) */
	SPEEDLIMIT_STAT_MAX,
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} sl_cars SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} sl_limit SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, SPEEDLIMIT_STAT_MAX);
	__type(key, enum speedlimit_stat);
	__type(value, __u64);
} sl_stats SEC(".maps");

/* How often OUT_OF_RANGE retries its compare-and-exchange before giving up. Each failure means
 * another CPU changed the counter in between, so on a 2-core machine it practically never
 * loops more than once. */
#define SPEEDLIMIT_CAS_TRIES 16

static __always_inline int pass(enum speedlimit_stat why)
{
	stat_inc(&sl_stats, why);
	return XDP_PASS;
}

/* Fixed point with 28 fractional bits: every intermediate below stays under 2^63. */
#define Q 28
#define ONE (1ULL << Q)
#define PI_Q 843314857ULL /* round(pi * 2^28) */

/* speed_limit returns round(45*cos(pi/70*(c-30)) + 75) for 30 <= c < 100, 120 below and 30
 * from 100 on, in integer arithmetic (BPF has no floating point). cos is reduced to [0, pi/2]
 * by cos(pi - x) = -cos(x) and evaluated as its Taylor polynomial up to x^8 in Horner form;
 * the truncation error there is below x^10/10! = 2.6e-5, i.e. 0.0012 km/h after the factor 45,
 * far inside the rounding. A test compares every count 0..1000 with the float formula. */
static __always_inline __u32 speed_limit(__u64 c)
{
	if (c < 30)
		return 120;
	if (c >= 100)
		return 30;
	__u64 t = c - 30;            /* 0..69 */
	__u64 u = t > 35 ? 70 - t : t; /* 0..35 */
	__u64 x = u * PI_Q / 70;     /* pi*u/70 in [0, pi/2] */
	__u64 x2 = (x * x) >> Q;
	__u64 h = ONE - x2 / 56;
	h = ONE - ((x2 * h) >> Q) / 30;
	h = ONE - ((x2 * h) >> Q) / 12;
	h = ONE - ((x2 * h) >> Q) / 2; /* cos(x) >= 0 */
	__u64 v = 45 * h;
	__u64 lim = t > 35 ? (75ULL << Q) - v : (75ULL << Q) + v;
	return (lim + (ONE >> 1)) >> Q;
}

/* fold reduces a 32-bit one's complement sum to 16 bits. */
static __always_inline __u16 fold(__u32 sum)
{
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return sum;
}

/* sum16 adds n 16-bit words at p (n a constant) to a one's complement sum. */
#define sum16(p, n)                                                                                \
	({                                                                                         \
		__u32 __s = 0;                                                                     \
		const __u16 *__w = (const __u16 *)(p);                                             \
		_Pragma("unroll") for (int __i = 0; __i < (n); __i++) __s += __w[__i];             \
		__s;                                                                               \
	})

/* pseudo returns the one's complement sum of the IPv4 pseudo-header of a UDP datagram of
 * udp_len bytes (network byte order). */
static __always_inline __u32 pseudo(__be32 saddr, __be32 daddr, __be16 udp_len)
{
	return (saddr & 0xffff) + (saddr >> 16) + (daddr & 0xffff) + (daddr >> 16) +
	       bpf_htons(IPPROTO_UDP) + udp_len;
}

/* csum_ok checks a request's UDP checksum. 0 means the sender computed none (allowed over
 * IPv4). A field holding exactly the folded pseudo-header sum is what a local sender leaves
 * when it hands the checksum to offload (CHECKSUM_PARTIAL: on veth the checksum is never
 * filled in, and the stack accepts such a packet on its metadata, which XDP cannot see); it is
 * accepted, unverified, and counted, so a run can tell. Senders with TX checksum offload off
 * (the harness turns it off on its clients) send full checksums, which are verified. */
static __always_inline int csum_ok(struct iphdr *ip, struct udphdr *udp, int *offloaded)
{
	if (udp->check == 0)
		return 1;
	__u32 ph = pseudo(ip->saddr, ip->daddr, udp->len);
	if (fold(ph + sum16(udp, 8)) == 0xffff)
		return 1;
	if (udp->check == fold(ph)) {
		*offloaded = 1;
		return 1;
	}
	return 0;
}

static __always_inline int group_mac(const unsigned char *mac)
{
	return mac[0] & 1;
}

static __always_inline int group_ip(__be32 a)
{
	__u32 h = bpf_ntohl(a);
	return h == 0 || h == 0xffffffff || (h >> 28) == 0xe;
}

SEC("xdp")
int speedlimit_xdp(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;

	/* Check 1 and the fixed IPv4 header (parse_iphdr); options are bounds-checked with the
	 * UDP header below, which is found at IHL*4. */
	struct ethhdr *eth = data;
	struct iphdr *ip;
	switch (parse_iphdr(data, data_end, &ip)) {
	case PARSE_IPV4:
		break;
	case PARSE_NOT_IPV4:
		return pass(SPEEDLIMIT_STAT_NOT_IPV4);
	default:
		return pass(SPEEDLIMIT_STAT_MALFORMED);
	}
	__u32 ihl = ip->ihl * 4;
	if (ip->protocol != IPPROTO_UDP)
		return pass(SPEEDLIMIT_STAT_NOT_UDP);
	/* More fragments, or an offset: the payload is not all here. */
	if (ip->frag_off & bpf_htons(0x3fff))
		return pass(SPEEDLIMIT_STAT_FRAGMENT);

	struct udphdr *udp = (void *)ip + ihl;
	if ((void *)(udp + 1) > data_end)
		return pass(SPEEDLIMIT_STAT_TRUNCATED);
	if (udp->dest != bpf_htons(config.port))
		return pass(SPEEDLIMIT_STAT_OTHER_PORT);
	if (ihl != sizeof(*ip))
		return pass(SPEEDLIMIT_STAT_OPTIONS);

	/* From here on the IPv4 header is exactly 20 bytes: a constant offset the verifier can
	 * follow (it does not carry the bounds check above over to it, hence the repeat). */
	udp = (void *)(ip + 1);
	if ((void *)(udp + 1) > data_end)
		return pass(SPEEDLIMIT_STAT_TRUNCATED);
	struct speedlimit_msg *msg = (void *)(udp + 1);
	if (udp->len != bpf_htons(sizeof(*udp) + sizeof(*msg)))
		return pass(SPEEDLIMIT_STAT_SIZE);
	if (ip->tot_len != bpf_htons(sizeof(*ip) + sizeof(*udp) + sizeof(*msg)))
		return pass(SPEEDLIMIT_STAT_SIZE);
	/* Frames may be longer (Ethernet padding), never shorter. */
	if ((void *)(msg + 1) > data_end)
		return pass(SPEEDLIMIT_STAT_TRUNCATED);

	__u32 op = bpf_ntohl(msg->op);
	if (op != SPEEDLIMIT_GET_SPEED_LIMIT && op != SPEEDLIMIT_OUT_OF_RANGE)
		return pass(SPEEDLIMIT_STAT_UNKNOWN_OP);

	if (fold(sum16(ip, 10)) != 0xffff)
		return pass(SPEEDLIMIT_STAT_CHECKSUM);
	int offloaded = 0;
	if (!csum_ok(ip, udp, &offloaded))
		return pass(SPEEDLIMIT_STAT_CHECKSUM);
	if (group_mac(eth->h_source) || group_mac(eth->h_dest) || group_ip(ip->saddr) ||
	    group_ip(ip->daddr))
		return pass(SPEEDLIMIT_STAT_ADDRESS);
	if (offloaded)
		stat_inc(&sl_stats, SPEEDLIMIT_STAT_CSUM_OFFLOADED);

	__u32 zero = 0;
	__u64 *n = bpf_map_lookup_elem(&sl_cars, &zero);
	if (!n)
		return pass(SPEEDLIMIT_STAT_NO_STATE);

	if (op == SPEEDLIMIT_OUT_OF_RANGE) {
		/* Decrement unless 0: compare-and-exchange, retried while another CPU moved the
		 * counter in between. */
		for (int i = 0; i < SPEEDLIMIT_CAS_TRIES; i++) {
			__u64 old = *(volatile __u64 *)n;
			if (old == 0) {
				stat_inc(&sl_stats, SPEEDLIMIT_STAT_LEFT_EMPTY);
				return XDP_DROP;
			}
			if (__sync_val_compare_and_swap(n, old, old - 1) == old) {
				stat_inc(&sl_stats, SPEEDLIMIT_STAT_LEFT);
				return XDP_DROP;
			}
		}
		stat_inc(&sl_stats, SPEEDLIMIT_STAT_CONTENDED);
		return XDP_DROP;
	}

	/* GET_SPEED_LIMIT: this car counts, itself included. */
	__u64 c = __sync_fetch_and_add(n, 1) + 1;
	__u32 lim;
	if (config.mode == SPEEDLIMIT_MODE_COMPUTE) {
		lim = speed_limit(c);
	} else {
		__u32 *l = bpf_map_lookup_elem(&sl_limit, &zero);
		if (!l)
			return pass(SPEEDLIMIT_STAT_NO_STATE);
		lim = *(volatile __u32 *)l;
	}

	unsigned char mac[ETH_ALEN];
	__builtin_memcpy(mac, eth->h_source, ETH_ALEN);
	__builtin_memcpy(eth->h_source, eth->h_dest, ETH_ALEN);
	__builtin_memcpy(eth->h_dest, mac, ETH_ALEN);

	__be32 a = ip->saddr;
	ip->saddr = ip->daddr;
	ip->daddr = a;

	__be16 p = udp->source;
	udp->source = udp->dest;
	udp->dest = p;

	msg->op = bpf_htonl(SPEEDLIMIT_REPLY);
	msg->value = bpf_htonl(lim);

	udp->check = 0;
	__u16 sum = ~fold(pseudo(ip->saddr, ip->daddr, udp->len) + sum16(udp, 8));
	udp->check = sum ? sum : 0xffff; /* 0 would mean "no checksum" */

	stat_inc(&sl_stats, SPEEDLIMIT_STAT_REPLIED);
	return XDP_TX;
}

/* speedlimit_peer goes on the other end of the veth pair in native mode: a veth delivers
 * frames that its peer sends with XDP_TX only while it runs an XDP program itself. */
SEC("xdp")
int speedlimit_peer(struct xdp_md *ctx)
{
	return XDP_PASS;
}
