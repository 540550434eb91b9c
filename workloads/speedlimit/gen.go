package speedlimit

// The flags of the compiler come from the Makefile (`make generate`); -mcpu=v3 is this
// program's own: it uses the atomic fetch-and-add and compare-and-exchange of BPF ISA v3.
//go:generate go tool bpf2go -target bpfel -type speedlimit_stat -type speedlimit_mode speedlimit ../../bpf/speedlimit.c -- -nostdinc -I../../bpf/include -mcpu=v3
