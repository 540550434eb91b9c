// Package emptyprog holds an empty TCX program: the baseline of the per-packet cost figures
// and of the manager's tests.
package emptyprog

//go:generate go tool bpf2go -target bpfel empty ../../../bpf/empty.c -- -I../../../bpf/include
