package stats

import (
	"errors"
	"fmt"

	"gonum.org/v1/gonum/stat"
)

// Fit is a least-squares line y = Intercept + Slope*x through N points, with R2 its
// coefficient of determination.
type Fit struct {
	Intercept, Slope, R2 float64
	N                    int
}

// LinearFit fits a least-squares line through the points (xs[i], ys[i]) with gonum's
// stat.LinearRegression and stat.RSquared. It returns an error when the slices differ
// in length, hold fewer than 2 points or a NaN or ±Inf, or when every x is equal (the
// line would be vertical). When every y is equal the line fits exactly and R2 is 1
// (gonum's formula would give 0/0).
func LinearFit(xs, ys []float64) (Fit, error) {
	if len(xs) != len(ys) {
		return Fit{}, fmt.Errorf("linear fit: %d x values but %d y values", len(xs), len(ys))
	}
	if len(xs) < 2 {
		return Fit{}, fmt.Errorf("linear fit: %d points, need at least 2", len(xs))
	}
	allXEqual, allYEqual := true, true
	for i := range xs {
		if !isFinite(xs[i]) || !isFinite(ys[i]) {
			return Fit{}, fmt.Errorf("linear fit: point %d (%v, %v) is not finite", i, xs[i], ys[i])
		}
		allXEqual = allXEqual && xs[i] == xs[0]
		allYEqual = allYEqual && ys[i] == ys[0]
	}
	if allXEqual {
		return Fit{}, errors.New("linear fit: all x values are equal")
	}

	intercept, slope := stat.LinearRegression(xs, ys, nil, false)
	r2 := 1.0
	if !allYEqual {
		r2 = stat.RSquared(xs, ys, nil, intercept, slope)
	}
	return Fit{Intercept: intercept, Slope: slope, R2: r2, N: len(xs)}, nil
}

// String returns the fit as an equation with three significant digits, like
// "y = 0.0123x + 1.05 (R² = 0.98)".
func (f Fit) String() string {
	sign, b := "+", f.Intercept
	if b < 0 {
		sign, b = "-", -b
	}
	return fmt.Sprintf("y = %.3gx %s %.3g (R² = %.3g)", noNegZero(f.Slope), sign, noNegZero(b), noNegZero(f.R2))
}

// noNegZero turns -0 into 0 so that it prints without a sign.
func noNegZero(v float64) float64 {
	if v == 0 {
		return 0
	}
	return v
}
