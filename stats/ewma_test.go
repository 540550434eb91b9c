package stats

import (
	"math"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestEWMA(t *testing.T) {
	got, err := EWMA([]float64{10, 20, 30, 0}, 0.5)
	require.NoError(t, err)
	assert.InDeltaSlice(t, []float64{10, 15, 22.5, 11.25}, got, eps)

	// 0.25*8 + 0.75*4 = 5; 0.25*0 + 0.75*5 = 3.75.
	got, err = EWMA([]float64{4, 8, 0}, 0.25)
	require.NoError(t, err)
	assert.InDeltaSlice(t, []float64{4, 5, 3.75}, got, eps)

	in := []float64{3, 1, 2}
	got, err = EWMA(in, 1)
	require.NoError(t, err)
	assert.Equal(t, in, got)

	got, err = EWMA(nil, 0.5)
	require.NoError(t, err)
	assert.Empty(t, got)
}

func TestEWMABadAlpha(t *testing.T) {
	for _, alpha := range []float64{0, -0.1, 1.0001, math.NaN(), math.Inf(1)} {
		_, err := EWMA([]float64{1, 2}, alpha)
		assert.Error(t, err, "alpha=%v", alpha)
	}
	_, err := EWMA([]float64{1}, 0)
	assert.EqualError(t, err, "ewma: alpha 0 is outside (0, 1]")
}
