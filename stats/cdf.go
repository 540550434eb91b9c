package stats

// CDFPoint is one step of an empirical cumulative distribution: a fraction P of the
// values are ≤ X.
type CDFPoint struct {
	X, P float64
}

// CDF returns the empirical cumulative distribution of values, one point per value in
// ascending order: the i-th smallest of n values (1-based) has P = i/n, so equal values
// give one point each and the last point has P 1. NaN and ±Inf values are dropped, as in
// Summarize, and n counts only the values kept. An input with nothing left gives an
// empty, non-nil slice. CDF does not modify values.
func CDF(values []float64) []CDFPoint {
	xs, _ := finiteSorted(values)
	out := make([]CDFPoint, len(xs))
	n := float64(len(xs))
	for i, x := range xs {
		out[i] = CDFPoint{X: x, P: float64(i+1) / n}
	}
	return out
}
