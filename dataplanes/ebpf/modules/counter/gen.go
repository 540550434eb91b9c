package counter

//go:generate go tool bpf2go -target bpfel -type counter_key -type counter_value counter ../../../../bpf/counter.c -- -nostdinc -I../../../../bpf/include
