/* Definitions shared by edgebpf's BPF programs. Debian's kernel headers are older than the
 * kernels edgebpf targets: what they lack is defined here. */
#ifndef EDGEBPF_H
#define EDGEBPF_H

#include <linux/bpf.h>
#include <linux/pkt_cls.h>

/* TCX: only TCX_NEXT passes a packet to the next program of the chain; TCX_PASS ends it. */
#ifndef TCX_NEXT
#define TCX_NEXT -1
#define TCX_PASS 0
#define TCX_DROP 2
#define TCX_REDIRECT 7
#endif

#endif /* EDGEBPF_H */
