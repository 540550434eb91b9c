package stats

import (
	"encoding/json"
	"math"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const eps = 1e-9

func oneToTen() []float64 { return []float64{7, 3, 10, 1, 5, 9, 2, 8, 4, 6} }

func TestSummarizeOneToTen(t *testing.T) {
	in := oneToTen()
	s := Summarize(in)

	assert.Equal(t, []float64{7, 3, 10, 1, 5, 9, 2, 8, 4, 6}, in, "input must not be sorted in place")
	assert.Equal(t, 10, s.N)
	assert.InDelta(t, 5.5, s.Mean, eps)
	assert.InDelta(t, math.Sqrt(82.5/9), s.Stddev, eps) // sample stddev, n-1
	assert.InDelta(t, 3.0277, s.Stddev, 1e-4)
	assert.Equal(t, 1.0, s.Min)
	assert.Equal(t, 10.0, s.Max)
	assert.Equal(t, 5.5, s.Median)
	// P50 is the median, not the empirical quantile (which would be 5).
	assert.Equal(t, 5.5, s.P50)
	// Empirical quantile: the ceil(p*n)-th smallest value.
	assert.Equal(t, 9.0, s.P90)  // ceil(9)  = 9th
	assert.Equal(t, 10.0, s.P99) // ceil(9.9) = 10th
	// Distribution-free interval for the median of 10 values: [x(2), x(9)], which
	// covers it with probability 1 - 2*P(Binomial(10, 0.5) <= 1) = 1 - 2*11/1024.
	assert.Equal(t, 2.0, s.CILo)
	assert.Equal(t, 9.0, s.CIHi)
	assert.InDelta(t, 1-22.0/1024, s.Confidence, eps)
	assert.Empty(t, s.Warnings)
}

func TestSummarizeTooFewForInterval(t *testing.T) {
	s := Summarize([]float64{5, 1, 4, 2, 3})

	assert.Equal(t, 5, s.N)
	assert.Equal(t, 3.0, s.Median)
	assert.Equal(t, 3.0, s.P50)
	assert.InDelta(t, 3.0, s.Mean, eps)
	assert.InDelta(t, math.Sqrt(2.5), s.Stddev, eps)
	require.Len(t, s.Warnings, 1)
	assert.Equal(t, "need >= 6 samples for confidence interval at level 0.95", s.Warnings[0])
	// The unbounded interval is reported as [min, max] with its exact confidence.
	assert.Equal(t, 1.0, s.CILo)
	assert.Equal(t, 5.0, s.CIHi)
	assert.InDelta(t, 1-2.0/32, s.Confidence, eps)
}

func TestSummarizeSixHasFiniteInterval(t *testing.T) {
	s := Summarize([]float64{1, 2, 3, 4, 5, 6})
	assert.Empty(t, s.Warnings)
	assert.Equal(t, 1.0, s.CILo)
	assert.Equal(t, 6.0, s.CIHi)
	assert.InDelta(t, 1-2.0/64, s.Confidence, eps)
}

func TestSummarizeEmpty(t *testing.T) {
	for name, in := range map[string][]float64{"nil": nil, "empty": {}} {
		t.Run(name, func(t *testing.T) {
			assert.Equal(t, Summary{Warnings: []string{"no samples"}}, Summarize(in))
		})
	}
}

func TestSummarizeOne(t *testing.T) {
	s := Summarize([]float64{42})
	assert.Equal(t, 1, s.N)
	assert.Equal(t, 42.0, s.Median)
	assert.Equal(t, 42.0, s.Mean)
	assert.Equal(t, 0.0, s.Stddev)
	assert.Equal(t, 42.0, s.Min)
	assert.Equal(t, 42.0, s.Max)
	assert.Equal(t, 42.0, s.P50)
	assert.Equal(t, 42.0, s.P90)
	assert.Equal(t, 42.0, s.P99)
	assert.Equal(t, 42.0, s.CILo)
	assert.Equal(t, 42.0, s.CIHi)
	assert.Equal(t, 0.0, s.Confidence)
	assert.Contains(t, s.Warnings, "need >= 6 samples for confidence interval at level 0.95")
}

func TestSummarizeDropsNonFinite(t *testing.T) {
	in := append(oneToTen(), math.NaN(), math.Inf(1), math.Inf(-1))
	s := Summarize(in)
	want := Summarize(oneToTen())
	want.Warnings = []string{"dropped 3 non-finite values (NaN or ±Inf)"}
	assert.Equal(t, want, s)
}

func TestSummarizeOnlyNaN(t *testing.T) {
	s := Summarize([]float64{math.NaN(), math.NaN()})
	assert.Equal(t, Summary{Warnings: []string{"dropped 2 non-finite values (NaN or ±Inf)", "no samples"}}, s)
}

func TestSummarizeOverflowStaysFinite(t *testing.T) {
	s := Summarize([]float64{math.MaxFloat64, math.MaxFloat64})
	assert.Equal(t, 0.0, s.Mean)
	assert.Contains(t, s.Warnings, "mean overflowed and is reported as 0")
	_, err := json.Marshal(s)
	require.NoError(t, err)
}

func TestSummaryJSON(t *testing.T) {
	inputs := map[string][]float64{
		"empty": nil, "one": {1}, "five": {1, 2, 3, 4, 5}, "ten": oneToTen(),
		"non-finite": {math.NaN(), math.Inf(1), 1},
	}
	for name, in := range inputs {
		t.Run(name, func(t *testing.T) {
			b, err := json.Marshal(Summarize(in))
			require.NoError(t, err)
			var back Summary
			require.NoError(t, json.Unmarshal(b, &back))
			assert.Equal(t, Summarize(in), back)
		})
	}

	b, err := json.Marshal(Summarize(oneToTen()))
	require.NoError(t, err)
	var fields map[string]any
	require.NoError(t, json.Unmarshal(b, &fields))
	keys := make([]string, 0, len(fields))
	for k := range fields {
		keys = append(keys, k)
	}
	assert.ElementsMatch(t, []string{"n", "median", "mean", "stddev", "min", "max", "p50", "p90", "p99",
		"ci_lo", "ci_hi", "confidence"}, keys, "warnings is omitted when empty")

	b, err = json.Marshal(Summarize(nil))
	require.NoError(t, err)
	assert.Contains(t, string(b), `"warnings":["no samples"]`)
}

func TestPercentile(t *testing.T) {
	in := oneToTen()
	for _, tc := range []struct {
		p, want float64
	}{
		{0, 1}, {0.1, 1}, {0.11, 2}, {0.5, 5}, {0.9, 9}, {0.95, 10}, {0.99, 10}, {1, 10},
	} {
		assert.Equal(t, tc.want, Percentile(in, tc.p), "p=%v", tc.p)
	}
	assert.Equal(t, []float64{7, 3, 10, 1, 5, 9, 2, 8, 4, 6}, in, "input must not be sorted in place")

	s := Summarize(in)
	assert.Equal(t, s.P90, Percentile(in, 0.9))
	assert.Equal(t, s.P99, Percentile(in, 0.99))
	// For an even count the empirical p50 is the lower middle value, not the median.
	assert.Equal(t, 5.0, Percentile(in, 0.5))
	assert.Equal(t, 5.5, s.Median)
	// For an odd count they agree.
	assert.Equal(t, Summarize([]float64{3, 1, 2}).P50, Percentile([]float64{3, 1, 2}, 0.5))

	assert.Equal(t, 2.0, Percentile([]float64{math.NaN(), 2, math.Inf(1)}, 1))
	assert.True(t, math.IsNaN(Percentile(nil, 0.5)))
	assert.True(t, math.IsNaN(Percentile([]float64{math.NaN()}, 0.5)))
	assert.True(t, math.IsNaN(Percentile(in, -0.1)))
	assert.True(t, math.IsNaN(Percentile(in, 1.1)))
	assert.True(t, math.IsNaN(Percentile(in, math.NaN())))
}
