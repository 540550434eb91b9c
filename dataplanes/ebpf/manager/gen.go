package manager

//go:generate go tool bpf2go -target bpfel -type disp_stat dispatcher ../../../bpf/dispatcher.c -- -nostdinc -I../../../bpf/include
