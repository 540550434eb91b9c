// Package emptyprog holds an empty TCX program: the baseline of the per-packet cost figures
// and of the manager's tests.
package emptyprog

import (
	"fmt"

	"github.com/cilium/ebpf"
)

//go:generate go tool bpf2go -target bpfel empty ../../../../bpf/empty.c -- -nostdinc -I../../../../bpf/include

// Load loads the empty program; the caller closes it.
func Load() (*ebpf.Program, error) {
	var objs emptyObjects
	if err := loadEmptyObjects(&objs, nil); err != nil {
		return nil, fmt.Errorf("load empty program: %w", err)
	}
	return objs.EmptyTc, nil
}

// Spec returns the empty program's collection spec, for loaders that change how it is loaded.
func Spec() (*ebpf.CollectionSpec, error) { return loadEmpty() }
