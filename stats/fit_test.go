package stats

import (
	"math"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestLinearFitExact(t *testing.T) {
	xs := []float64{0, 1, 2, 3, 10}
	ys := make([]float64, len(xs))
	for i, x := range xs {
		ys[i] = 2*x + 1
	}
	f, err := LinearFit(xs, ys)
	require.NoError(t, err)
	assert.InDelta(t, 2, f.Slope, eps)
	assert.InDelta(t, 1, f.Intercept, eps)
	assert.InDelta(t, 1, f.R2, eps)
	assert.Equal(t, 5, f.N)
	assert.Equal(t, "y = 2x + 1 (R² = 1)", f.String())
}

func TestLinearFitNoisy(t *testing.T) {
	// x̄ = 3, ȳ = 4, Sxy = 6, Sxx = 10: slope 0.6, intercept 4 - 0.6*3 = 2.2.
	// Residuals -0.8, 0.6, 1, -0.6, -0.2: SSres 2.4; SStot 6; R² = 1 - 2.4/6 = 0.6.
	f, err := LinearFit([]float64{1, 2, 3, 4, 5}, []float64{2, 4, 5, 4, 5})
	require.NoError(t, err)
	assert.InDelta(t, 0.6, f.Slope, eps)
	assert.InDelta(t, 2.2, f.Intercept, eps)
	assert.InDelta(t, 0.6, f.R2, eps)
	assert.Equal(t, 5, f.N)
}

func TestLinearFitTwoPointsAndFlat(t *testing.T) {
	f, err := LinearFit([]float64{1, 3}, []float64{5, 1})
	require.NoError(t, err)
	assert.InDelta(t, -2, f.Slope, eps)
	assert.InDelta(t, 7, f.Intercept, eps)
	assert.InDelta(t, 1, f.R2, eps)

	f, err = LinearFit([]float64{1, 2, 3}, []float64{4, 4, 4})
	require.NoError(t, err)
	assert.Equal(t, Fit{Intercept: 4, Slope: 0, R2: 1, N: 3}, f)
}

func TestLinearFitErrors(t *testing.T) {
	for name, tc := range map[string]struct {
		xs, ys []float64
		want   string
	}{
		"length mismatch": {[]float64{1, 2, 3}, []float64{1, 2}, "linear fit: 3 x values but 2 y values"},
		"no points":       {nil, nil, "linear fit: 0 points, need at least 2"},
		"one point":       {[]float64{1}, []float64{1}, "linear fit: 1 points, need at least 2"},
		"all x equal":     {[]float64{2, 2, 2}, []float64{1, 2, 3}, "linear fit: all x values are equal"},
		"nan":             {[]float64{1, 2, 3}, []float64{1, math.NaN(), 3}, "linear fit: point 1 (2, NaN) is not finite"},
		"inf":             {[]float64{1, math.Inf(1)}, []float64{1, 2}, "linear fit: point 1 (+Inf, 2) is not finite"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := LinearFit(tc.xs, tc.ys)
			assert.EqualError(t, err, tc.want)
		})
	}
}

func TestFitString(t *testing.T) {
	assert.Equal(t, "y = 0.0123x + 1.05 (R² = 0.98)", Fit{Intercept: 1.05, Slope: 0.0123, R2: 0.98}.String())
	assert.Equal(t, "y = -0.5x - 2.5 (R² = 0.5)", Fit{Intercept: -2.5, Slope: -0.5, R2: 0.5}.String())
	assert.Equal(t, "y = 0x + 0 (R² = 1)", Fit{Intercept: math.Copysign(0, -1), Slope: math.Copysign(0, -1), R2: 1}.String())
	assert.Equal(t, "y = 1.23e+06x + 0.333 (R² = 0.999)", Fit{Intercept: 1.0 / 3, Slope: 1234567, R2: 0.9991}.String())
}
