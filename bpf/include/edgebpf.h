/* Definitions shared by edgebpf's BPF programs. They compile against the headers vendored in
 * this directory only (-nostdinc, see VERSIONS); what those lack is defined here. */
#ifndef EDGEBPF_H
#define EDGEBPF_H

#include <linux/bpf.h>
#include <linux/pkt_cls.h>

/* TCX return codes (enum tcx_action_base, Linux 6.6), which the vendored linux/bpf.h (6.1)
 * predates. Defined unconditionally: headers that have the enum make this a compile error
 * rather than a silent second definition. Only TCX_NEXT passes a packet to the next program
 * of the chain; TCX_PASS ends it. */
#define TCX_NEXT -1
#define TCX_PASS 0
#define TCX_DROP 2
#define TCX_REDIRECT 7

/* offsetof without libc's or the compiler's stddef.h. */
#define offsetof(type, member) __builtin_offsetof(type, member)

#endif /* EDGEBPF_H */
