// Package parallel runs independent pieces of work on a bounded number of goroutines: the
// eBPF manager attaching to many veths, reports rendering figures and decoding raw CSV files.
//
// Note: golang.org/x/sync/errgroup with SetLimit was considered. It returns only the first
// error, while every caller here reports all of them (each veth, figure or file that failed),
// so Do joins them in index order instead.
package parallel

import (
	"errors"
	"sync"
)

// Do calls fn(i) for every i in [0, n) on at most limit goroutines at a time (limit < 1
// means one), waits for all of them and returns their errors joined in index order (nil if
// none failed). Every call runs; a failure does not stop the others.
func Do(n, limit int, fn func(i int) error) error {
	limit = max(limit, 1)
	errs := make([]error, n)
	sem := make(chan struct{}, limit)
	var wg sync.WaitGroup
	for i := range n {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			errs[i] = fn(i)
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}
