package parallel

import (
	"errors"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestDoRunsEveryIndexWithinTheLimit(t *testing.T) {
	const n, limit = 100, 4
	var running, peak atomic.Int64
	seen := make([]atomic.Int64, n)
	release := make(chan struct{})
	go func() {
		// Let the first batch pile up, then let everything through.
		for running.Load() < limit {
		}
		close(release)
	}()
	err := Do(n, limit, func(i int) error {
		r := running.Add(1)
		for {
			p := peak.Load()
			if r <= p || peak.CompareAndSwap(p, r) {
				break
			}
		}
		<-release
		seen[i].Add(1)
		running.Add(-1)
		return nil
	})
	require.NoError(t, err)
	for i := range seen {
		assert.Equal(t, int64(1), seen[i].Load(), "index %d", i)
	}
	assert.LessOrEqual(t, peak.Load(), int64(limit))
}

func TestDoJoinsEveryErrorInIndexOrder(t *testing.T) {
	sentinel := errors.New("sentinel")
	err := Do(10, 3, func(i int) error {
		switch i {
		case 7:
			return fmt.Errorf("seven: %w", sentinel)
		case 2:
			return errors.New("two")
		}
		return nil
	})
	require.Error(t, err)
	assert.Equal(t, "two\nseven: sentinel", err.Error())
	assert.ErrorIs(t, err, sentinel)
}

func TestDoWithNothingOrNoLimit(t *testing.T) {
	assert.NoError(t, Do(0, 4, func(int) error { panic("not called") }))
	calls := 0
	assert.NoError(t, Do(3, 0, func(int) error { calls++; return nil }), "limit 0 runs one at a time")
	assert.Equal(t, 3, calls)
}
