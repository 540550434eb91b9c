package stats

import (
	"math"
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestCDF(t *testing.T) {
	in := []float64{3, 1, 2}
	assert.Equal(t, []CDFPoint{{1, 1.0 / 3}, {2, 2.0 / 3}, {3, 1}}, CDF(in))
	assert.Equal(t, []float64{3, 1, 2}, in, "input must not be sorted in place")

	// Equal values give one step each; NaN and ±Inf are dropped before counting.
	assert.Equal(t, []CDFPoint{{1, 0.25}, {2, 0.5}, {2, 0.75}, {5, 1}},
		CDF([]float64{2, math.NaN(), 5, 1, math.Inf(1), 2, math.Inf(-1)}))
}

func TestCDFEmpty(t *testing.T) {
	for _, in := range [][]float64{nil, {}, {math.NaN()}} {
		got := CDF(in)
		assert.NotNil(t, got)
		assert.Empty(t, got)
	}
}
