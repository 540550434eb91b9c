package stats

import (
	"math"
	"slices"
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestAggregateOf(t *testing.T) {
	assert.Equal(t, Median, AggregateOf("rtt"))
	assert.Equal(t, Mean, AggregateOf("throughput"))
	assert.Equal(t, Mean, AggregateOf("cpu_process:edgebpf"), "a qualified name takes its base's")
	assert.Equal(t, Median, AggregateOf("widgets"), "unknown metrics take the median")
	for _, d := range Catalogue {
		assert.NotEmpty(t, d.Aggregate, d.Name)
	}
	assert.Equal(t, 2.0, Median.Of([]float64{3, 1, 2, 100}[:3]))
	assert.Equal(t, 2.5, Median.Of([]float64{4, 1, 2, 3}))
	assert.Equal(t, 26.5, Mean.Of([]float64{1, 2, 3, 100}))
}

func TestRepValues(t *testing.T) {
	rv := RepValues([]int{2, 1, 2, 1, 2}, []float64{10, 1, 30, math.NaN(), 20}, Median)
	assert.Equal(t, []RepValue{{Rep: 1, N: 1, Value: 1}, {Rep: 2, N: 3, Value: 20}}, rv)
}

func TestMinPValue(t *testing.T) {
	assert.InDelta(t, 0.1, MinPValue(3, 3), 1e-9, "2/C(6,3)")
	assert.InDelta(t, 2.0/70, MinPValue(4, 4), 1e-9, "2/C(8,4)")
	assert.Equal(t, 1.0, MinPValue(0, 3))
	assert.GreaterOrEqual(t, MinPValue(1, 1), 0.05)
	assert.Less(t, MinPValue(8, 8), 0.001)
}

func TestUCDF(t *testing.T) {
	// n = m = 2: U takes 0, 1, 2, 2, 3, 4 over the 6 arrangements.
	cdf := uCDF(2, 2)
	for u, want := range []float64{1.0 / 6, 2.0 / 6, 4.0 / 6, 5.0 / 6, 1} {
		assert.InDelta(t, want, cdf(u), 1e-12, "u=%d", u)
	}
	assert.InDelta(t, 1.0/70, uCDF(4, 4)(0), 1e-12)
	// The normal approximation is close to the exact distribution where they meet.
	assert.InDelta(t, uCDF(50, 50)(1000), uCDF(51, 50)(1020), 0.02)
}

func TestHodgesLehmann(t *testing.T) {
	x := []float64{10, 11, 12, 13, 14, 15, 16, 17}
	y := []float64{20, 21, 22, 23, 24, 25, 26, 27}
	s := HodgesLehmann(x, y, 0.95)
	assert.Equal(t, 10.0, s.Estimate)
	assert.LessOrEqual(t, s.Lo, 10.0)
	assert.GreaterOrEqual(t, s.Hi, 10.0)
	assert.Greater(t, s.Lo, 0.0, "the interval excludes 0 for samples that do not overlap")
	assert.GreaterOrEqual(t, s.Confidence, 0.95)
	// Three values a side cannot give 95 %: the widest interval and its real level.
	s = HodgesLehmann([]float64{1, 2, 3}, []float64{1, 2, 3}, 0.95)
	assert.Equal(t, 0.0, s.Estimate)
	assert.Equal(t, -2.0, s.Lo)
	assert.Equal(t, 2.0, s.Hi)
	assert.InDelta(t, 0.9, s.Confidence, 1e-12)
}

func TestMinDetectableChange(t *testing.T) {
	x := []float64{98, 99, 100, 101, 102, 97, 103, 100}
	y := []float64{99, 100, 101, 102, 103, 98, 104, 101}
	s := HodgesLehmann(x, y, 0.95)
	assert.True(t, math.IsInf(MinDetectableChange(3, 3, HodgesLehmann(x[:3], y[:3], 0.95), 100, 0.05), 1), "3 a side cannot reach 0.05")
	assert.Equal(t, 0.0, MinDetectableChange(8, 8, Shift{Lo: 1, Hi: 1, Confidence: 0.95}, 100, 0.05), "no spread")
	assert.True(t, math.IsInf(MinDetectableChange(8, 8, s, 0, 0.05), 1), "a spread around 0")
	got := MinDetectableChange(8, 8, s, 100, 0.05)
	want := (1.959964 + 0.841621) * (s.Hi - s.Lo) / 2 / 1.959964 / 100
	assert.InDelta(t, want, got, 0.003, "at an interval of exactly 95 %%, 1.43 half-widths")
	assert.Greater(t, MinDetectableChange(4, 4, HodgesLehmann(x[:4], y[:4], 0.95), 100, 0.05), got, "fewer reps detect less")

	// A minority of spoilt repetitions (a burst of load): the rank-based figure stays near
	// the clean repetitions' spread, where the standard deviation's would be 30 times it.
	spoilt := append(slices.Clone(x), x...)
	spoilt = append(spoilt, 1000, 1200, 900)
	clean := MinDetectableChange(16, 16, HodgesLehmann(append(slices.Clone(x), x...), append(slices.Clone(y), y...), 0.95), 100, 0.05)
	noisy := MinDetectableChange(19, 16, HodgesLehmann(spoilt, append(slices.Clone(y), y...), 0.95), 100, 0.05)
	assert.Less(t, noisy, 2*clean, "outliers barely widen it (clean %.4f, spoilt %.4f)", clean, noisy)
}

func TestCV(t *testing.T) {
	cv, ok := CV([]float64{9, 10, 11})
	assert.True(t, ok)
	assert.InDelta(t, 0.1, cv, 1e-12)
	_, ok = CV([]float64{-1, 1})
	assert.False(t, ok)
}
