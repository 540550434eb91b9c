// Package speedlimit is the speed-limit responder of the Weinhold thesis (reference.md §4) in
// its three configurations: a user-space UDP server, and an XDP program on the server's
// receiving veth that answers requests in the kernel with the limit user space computes on a
// timer (mixed) or computes itself per request (eBPF-only). The wire format and the formula
// are in package wire; the client is bench.SpeedLimit*.
//
// Responder loads and attaches bpf/speedlimit.c (generated loader speedlimit_bpfel.go, `make
// generate`); Server runs one configuration in a namespace; SetTxChecksum turns a sender's
// TX checksum offload off, which the harness does on its clients (see bpf/speedlimit.c for
// why the responder does not depend on it).
//
// Native XDP on a veth answers with XDP_TX only while the peer of the receiving veth runs an
// XDP program as well, so the native mode attaches a pass-everything program to the peer (in
// the node namespace, the bridge side); where that fails, the program runs in generic mode.
// The mode that ran is reported (Responder.Mode, Server.XDPMode) and recorded in meta.json.
//
// Note: the thesis's prototype kept port, limit and car count in one hash map that both
// sides wrote, so a user-space write of the limit could overwrite a count the program had
// just incremented (its section 4.2). Here each value has one writer: the program owns the
// count (atomic add and compare-and-exchange), user space owns the limit, and the port is a
// load-time constant.
package speedlimit
