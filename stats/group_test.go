package stats

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestGroupSamplesOrder(t *testing.T) {
	rate := func(x string, v float64) Sample {
		return Sample{Metric: Throughput, X: x, XUnit: "bit/s", Value: v}
	}
	samples := []Sample{
		rate("500000000", 1),
		{Metric: RTT, Value: 0.001},
		rate("50000000", 2),
		{Metric: CPU, X: "warmup", XUnit: "phase", Value: 10},
		rate("1e9", 3),
		{Metric: CPU, X: "load", XUnit: "phase", Value: 20},
		rate("500000000", 4),
		{Metric: RTT, Value: 0.002},
		{Metric: CPU, X: "idle", XUnit: "phase", Value: 30},
		{Metric: Throughput, Value: 5}, // no X: first within its metric
		{Metric: CPU, X: "load", XUnit: "phase", Value: 21},
	}
	groups, err := GroupSamples(samples)
	require.NoError(t, err)

	type row struct {
		metric, x string
		values    []float64
	}
	var got []row
	for _, g := range groups {
		got = append(got, row{g.Metric.Name, g.X, g.Values})
	}
	assert.Equal(t, []row{
		{"throughput", "", []float64{5}},
		{"throughput", "50000000", []float64{2}},
		{"throughput", "500000000", []float64{1, 4}},
		{"throughput", "1e9", []float64{3}},
		{"rtt", "", []float64{0.001, 0.002}},
		{"cpu", "warmup", []float64{10}}, // not numeric: order of first appearance
		{"cpu", "load", []float64{20, 21}},
		{"cpu", "idle", []float64{30}},
	}, got)

	assert.Equal(t, Key{Metric: Throughput, X: "500000000", XUnit: "bit/s"}, groups[2].Key)
	assert.Equal(t, Key{Metric: CPU, X: "warmup", XUnit: "phase"}, groups[5].Key)
}

func TestGroupSamplesEmpty(t *testing.T) {
	groups, err := GroupSamples(nil)
	require.NoError(t, err)
	assert.Empty(t, groups)
}

func TestGroupSamplesMismatch(t *testing.T) {
	rttMS := Metric{Name: "rtt", Unit: "ms", Better: Lower}
	_, err := GroupSamples([]Sample{{Metric: RTT, Value: 1}, {Metric: CPU}, {Metric: rttMS, Value: 2}})
	assert.EqualError(t, err, `group samples: metric "rtt" is s (lower is better) in sample 0 but ms (lower is better) in sample 2`)

	rttHigher := Metric{Name: "rtt", Unit: "s", Better: Higher}
	_, err = GroupSamples([]Sample{{Metric: RTT}, {Metric: rttHigher}})
	assert.EqualError(t, err, `group samples: metric "rtt" is s (lower is better) in sample 0 but s (higher is better) in sample 1`)

	_, err = GroupSamples([]Sample{
		{Metric: Loss},
		{Metric: Loss, X: "1", XUnit: "clients"},
		{Metric: Loss, X: "2", XUnit: "bit/s"},
	})
	assert.EqualError(t, err, `group samples: metric "loss" has x unit "clients" in sample 1 but "bit/s" in sample 2`)
}
