package tunnel

//go:generate go tool bpf2go -target bpfel -type px_underlay tunnel ../../../../bpf/tunnel.c -- -nostdinc -I../../../../bpf/include
