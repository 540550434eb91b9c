package reports

import (
	"path/filepath"
	"slices"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	fx "github.com/edgebpf/edgebpf/reports/fixture"
)

// The fixture's new run is 20 % slower in latency and 30 % faster in throughput on both
// data planes alike, as a machine that changed between runs would be: relative to direct,
// userspace did not change.
func TestCompareRelativeTo(t *testing.T) {
	root := t.TempDir()
	a, b := filepath.Join(root, "base"), filepath.Join(root, "new")
	require.NoError(t, fx.Compare(a, b))

	abs, err := Compare(a, b, CompareOptions{Threshold: 0.05})
	require.NoError(t, err)
	require.Positive(t, abs.Regressions, "absolute: the slower machine looks like a regression")

	c, err := Compare(a, b, CompareOptions{Threshold: 0.05, RelativeTo: "direct"})
	require.NoError(t, err)
	assert.Equal(t, "direct", c.RelativeTo)
	assert.Zero(t, c.Regressions)
	assert.Zero(t, c.Improvements)
	require.NotEmpty(t, c.Changes)
	for _, ch := range c.Changes {
		assert.Equal(t, "userspace", ch.DataPlane, "the reference's own rows are left out")
		assert.Equal(t, "× direct", ch.Unit)
		assert.NotEqual(t, VerdictRegression, ch.Verdict, ch.Metric)
	}
	i := slices.IndexFunc(c.Changes, func(ch Change) bool { return ch.Metric == "rtt" })
	require.GreaterOrEqual(t, i, 0)
	rtt := c.Changes[i]
	assert.InDelta(t, 2.0, rtt.BaseRepMedian, 0.1, "userspace's RTT is twice direct's")

	_, err = Compare(a, b, CompareOptions{RelativeTo: "ebpf"})
	var ie *InputError
	require.ErrorAs(t, err, &ie)
	assert.ErrorContains(t, err, "has no data plane ebpf to compare relative to")
}
