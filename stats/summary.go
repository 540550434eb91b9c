package stats

import (
	"fmt"
	"math"
	"slices"

	"golang.org/x/perf/benchmath"
	"gonum.org/v1/gonum/stat"
)

// SummaryConfidence is the confidence level of the interval around the median that
// Summarize reports.
const SummaryConfidence = 0.95

// Summary describes one set of repeated measurements of a metric. Every field is finite,
// so a Summary always marshals to JSON; what could not be computed is zero and explained
// in Warnings.
//
// Median, CILo, CIHi and Confidence come from golang.org/x/perf/benchmath: the sample
// median and a distribution-free confidence interval around it. Mean and Stddev (the
// sample standard deviation, n-1 in the denominator) come from gonum. P50 is the Median,
// so that a table showing both never disagrees; P90 and P99 are empirical quantiles as
// defined by Percentile.
type Summary struct {
	N          int      `json:"n"`
	Median     float64  `json:"median"`
	Mean       float64  `json:"mean"`
	Stddev     float64  `json:"stddev"`
	Min        float64  `json:"min"`
	Max        float64  `json:"max"`
	P50        float64  `json:"p50"`
	P90        float64  `json:"p90"`
	P99        float64  `json:"p99"`
	CILo       float64  `json:"ci_lo"`
	CIHi       float64  `json:"ci_hi"`
	Confidence float64  `json:"confidence"`
	Warnings   []string `json:"warnings,omitempty"`
}

// Summarize computes the Summary of values. It does not modify values.
//
// NaN and ±Inf values are not measurements: they are dropped, and a warning says how
// many. An input with nothing left has N 0, every other number 0, and the warning
// "no samples". A single value has Stddev 0.
//
// When there are too few values for a finite interval at SummaryConfidence, benchmath's
// warning is carried in Warnings and the interval is the widest one the sample supports,
// [Min, Max], with Confidence set to the exact confidence of that interval for the
// median, 1 - 2·0.5ⁿ (0 for a single value). Otherwise Confidence is the actual level of
// benchmath's interval, which is at least SummaryConfidence.
//
// Note: reporting the unbounded interval as ±Inf was rejected because encoding/json
// cannot marshal it, and reporting zeros because a plot would draw an error bar to zero.
func Summarize(values []float64) Summary {
	var s Summary
	xs, dropped := finiteSorted(values)
	if dropped > 0 {
		s.Warnings = append(s.Warnings, fmt.Sprintf("dropped %d non-finite values (NaN or ±Inf)", dropped))
	}
	if len(xs) == 0 {
		s.Warnings = append(s.Warnings, "no samples")
		return s
	}

	s.N = len(xs)
	s.Min, s.Max = xs[0], xs[len(xs)-1]
	s.P90 = stat.Quantile(0.90, stat.Empirical, xs, nil)
	s.P99 = stat.Quantile(0.99, stat.Empirical, xs, nil)
	s.Mean, s.Stddev = stat.MeanStdDev(xs, nil)
	if s.N == 1 {
		s.Stddev = 0 // gonum divides by n-1.
	}

	// benchmath sorts the slice it is given; xs is already a sorted private copy.
	bs := benchmath.AssumeNothing.Summary(benchmath.NewSample(xs, &benchmath.DefaultThresholds), SummaryConfidence)
	s.Median, s.P50 = bs.Center, bs.Center
	s.CILo, s.CIHi, s.Confidence = bs.Lo, bs.Hi, bs.Confidence
	for _, w := range bs.Warnings {
		s.Warnings = append(s.Warnings, w.Error())
	}
	if math.IsInf(s.CILo, 0) || math.IsInf(s.CIHi, 0) {
		s.CILo, s.CIHi = s.Min, s.Max
		s.Confidence = 1 - 2*math.Pow(0.5, float64(s.N))
	}

	// Finite inputs can still overflow (a sum past MaxFloat64); keep the JSON promise.
	for _, f := range []struct {
		name string
		v    *float64
	}{
		{"median", &s.Median}, {"mean", &s.Mean}, {"stddev", &s.Stddev},
		{"p50", &s.P50}, {"ci_lo", &s.CILo}, {"ci_hi", &s.CIHi},
	} {
		if !isFinite(*f.v) {
			s.Warnings = append(s.Warnings, fmt.Sprintf("%s overflowed and is reported as 0", f.name))
			*f.v = 0
		}
	}
	return s
}

// Percentile returns the empirical p-quantile of values, p in [0, 1]: the smallest value
// v such that at least a fraction p of the values are ≤ v (the inverse of the empirical
// CDF, gonum's stat.Empirical). Percentile(values, 0.9) equals Summarize(values).P90.
// For an even count, Percentile(values, 0.5) is the lower of the two middle values, not
// the median; use Summarize for the median.
//
// NaN and ±Inf values are dropped, as in Summarize. Percentile returns NaN when no value
// is left or when p is outside [0, 1]. It does not modify values.
func Percentile(values []float64, p float64) float64 {
	if !(p >= 0 && p <= 1) {
		return math.NaN()
	}
	xs, _ := finiteSorted(values)
	if len(xs) == 0 {
		return math.NaN()
	}
	return stat.Quantile(p, stat.Empirical, xs, nil)
}

// isFinite reports whether v is neither NaN nor ±Inf.
func isFinite(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) }

// finiteSorted returns a sorted copy of the finite values and how many were dropped.
func finiteSorted(values []float64) (xs []float64, dropped int) {
	xs = make([]float64, 0, len(values))
	for _, v := range values {
		if !isFinite(v) {
			dropped++
			continue
		}
		xs = append(xs, v)
	}
	slices.Sort(xs)
	return xs, dropped
}
