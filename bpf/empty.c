/* An empty TC program: the baseline against which the modules' per-packet cost is measured. */
#include "edgebpf.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

SEC("tcx/ingress")
int empty_tc(struct __sk_buff *skb)
{
	return TCX_NEXT;
}
