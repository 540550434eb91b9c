package stats

import (
	"cmp"
	"math"
	"slices"

	"golang.org/x/perf/benchmath"
	"gonum.org/v1/gonum/stat"
	"gonum.org/v1/gonum/stat/distuv"
)

// Aggregate says how the samples of one repetition become that repetition's value.
type Aggregate string

// The per-repetition aggregates of the catalogue.
const (
	// Median is the median of the repetition's samples: for per-event times and sizes.
	Median Aggregate = "median"
	// Mean is the mean of the repetition's samples: for rates, ratios and counts measured
	// over equal intervals, where the mean is the repetition's own rate, share or count.
	Mean Aggregate = "mean"
)

// AggregateOf returns the per-repetition aggregate of a metric of the catalogue (a
// qualified name takes its base's); a metric the catalogue does not know takes the median.
func AggregateOf(name string) Aggregate {
	if d, ok := Describe(name); ok && d.Aggregate != "" {
		return d.Aggregate
	}
	return Median
}

// Of returns the aggregate of values, which must be finite and not empty.
func (a Aggregate) Of(values []float64) float64 {
	if a == Mean {
		return stat.Mean(values, nil)
	}
	xs := slices.Clone(values)
	slices.Sort(xs)
	n := len(xs)
	if n%2 == 1 {
		return xs[n/2]
	}
	return (xs[n/2-1] + xs[n/2]) / 2
}

// RepValue is the value of one repetition and how many samples made it.
type RepValue struct {
	Rep   int
	N     int
	Value float64
}

// RepValues groups values by repetition and aggregates each repetition with agg, in
// ascending order of rep. Non-finite values are dropped; a repetition without a finite
// value gives none. reps and values are parallel.
func RepValues(reps []int, values []float64, agg Aggregate) []RepValue {
	by := map[int][]float64{}
	for i, v := range values {
		if isFinite(v) {
			by[reps[i]] = append(by[reps[i]], v)
		}
	}
	out := make([]RepValue, 0, len(by))
	for r, vs := range by {
		out = append(out, RepValue{Rep: r, N: len(vs), Value: agg.Of(vs)})
	}
	slices.SortFunc(out, func(a, b RepValue) int { return cmp.Compare(a.Rep, b.Rep) })
	return out
}

// MinPValue is the smallest p-value benchmath's Mann-Whitney U test (two-sided, as
// benchstat uses it) can give for samples of n and m values: the p of two samples that do
// not overlap at all, 2/C(n+m, n) for small samples. When it is not below alpha, no
// difference between such samples can ever be significant. It asks benchmath rather than
// using the formula so that it agrees with the test compare runs, approximation included.
func MinPValue(n, m int) float64 {
	if n < 1 || m < 1 {
		return 1
	}
	a, b := make([]float64, n), make([]float64, m)
	for i := range a {
		a[i] = float64(i)
	}
	for i := range b {
		b[i] = float64(n + i)
	}
	c := benchmath.AssumeNothing.Compare(benchmath.NewSample(a, &benchmath.DefaultThresholds), benchmath.NewSample(b, &benchmath.DefaultThresholds))
	return c.P
}

// Shift is the Hodges-Lehmann estimate of the shift from one sample to another with its
// distribution-free confidence interval.
type Shift struct {
	// Estimate is the median of all differences y_j − x_i.
	Estimate float64
	// Lo and Hi bound the shift at level Confidence: the k-th smallest and largest of the
	// n·m differences, k from the exact null distribution of the Mann-Whitney U statistic
	// (a normal approximation above 100 values in all), the interval that inverts the test
	// (Hollander & Wolfe, Nonparametric Statistical Methods, 4.3). Confidence is the
	// interval's exact level, at least the one asked for unless the samples are too small
	// for it, in which case the interval is [min, max] of the differences and Confidence
	// says what that interval is worth. Ties make the level approximate.
	Lo, Hi     float64
	Confidence float64
}

// HodgesLehmann returns the shift from x to y at confidence level conf. x and y must be
// finite and not empty.
func HodgesLehmann(x, y []float64, conf float64) Shift {
	n, m := len(x), len(y)
	d := make([]float64, 0, n*m)
	for _, a := range x {
		for _, b := range y {
			d = append(d, b-a)
		}
	}
	slices.Sort(d)
	N := len(d)
	s := Shift{Estimate: d[N/2]}
	if N%2 == 0 {
		s.Estimate = (d[N/2-1] + d[N/2]) / 2
	}
	// k is the largest count with P(U <= k-1) <= (1-conf)/2: the interval
	// [d_(k), d_(N+1-k)] then covers the true shift with probability 1 - 2·P(U <= k-1).
	cdf := uCDF(n, m)
	tail := (1 - conf) / 2
	k := 0
	for k < N/2 && cdf(k) <= tail {
		k++
	}
	if k == 0 {
		s.Lo, s.Hi, s.Confidence = d[0], d[N-1], 1-2*cdf(0)
		return s
	}
	s.Lo, s.Hi, s.Confidence = d[k-1], d[N-k], 1-2*cdf(k-1)
	return s
}

// uCDF returns P(U <= u) for the Mann-Whitney U statistic of samples of n and m values
// without ties under the null hypothesis: exact for n+m <= 100, else the normal
// approximation with continuity correction.
func uCDF(n, m int) func(u int) float64 {
	if n+m > 100 {
		mu := float64(n*m) / 2
		sd := math.Sqrt(float64(n*m*(n+m+1)) / 12)
		return func(u int) float64 { return distuv.UnitNormal.CDF((float64(u) + 0.5 - mu) / sd) }
	}
	// f[j][u] counts the arrangements of i x's and j y's with U = u, built row by row
	// from f(i, j, u) = f(i-1, j, u-j) + f(i, j-1, u); only additions, so the counts stay
	// exact in float64 far beyond what repetitions reach.
	prev := make([][]float64, m+1)
	for j := range prev {
		prev[j] = []float64{1} // i = 0: one arrangement, U = 0
	}
	for i := 1; i <= n; i++ {
		cur := make([][]float64, m+1)
		cur[0] = []float64{1}
		for j := 1; j <= m; j++ {
			c := make([]float64, i*j+1)
			for u := range c {
				if u-j >= 0 && u-j < len(prev[j]) {
					c[u] += prev[j][u-j]
				}
				if u < len(cur[j-1]) {
					c[u] += cur[j-1][u]
				}
			}
			cur[j] = c
		}
		prev = cur
	}
	counts := prev[m]
	total := 0.0
	for _, c := range counts {
		total += c
	}
	cum := make([]float64, len(counts))
	acc := 0.0
	for u, c := range counts {
		acc += c
		cum[u] = acc / total
	}
	return func(u int) float64 {
		switch {
		case u < 0:
			return 0
		case u >= len(cum):
			return 1
		}
		return cum[u]
	}
}

// MDCPower is the power at which MinDetectableChange is computed.
const MDCPower = 0.8

// MinDetectableChange is the smallest shift, relative to |center|, that a two-sided
// Mann-Whitney test at alpha detects with probability MDCPower between samples of n and m
// repetitions whose shift was estimated as s (HodgesLehmann, the interval that inverts the
// same test). The interval's half-width is z((1+s.Confidence)/2) standard errors of the
// shift, and a shift of z(1−α/2) + z(MDCPower) standard errors is found with that power:
//
//	mdc = (z(1−α/2) + z(power)) · (s.Hi − s.Lo) / (2 · z((1+s.Confidence)/2)) / |center|
//
// Rank-based like the test, the figure follows what the test can see: a minority of
// repetitions spoilt by another process's burst of load moves it little, where a figure
// from the standard deviation (Cohen's detectable difference) grows with the outliers'
// size, and said "nothing under 59 % could have been detected" of a 64-repetition pair
// whose interval was ±2 % (recorded ci runs on a loaded host). It is +Inf when the test
// cannot reach alpha at all (MinPValue(n, m) >= alpha), s has no interval or center is 0
// with a spread, and 0 when the interval is a point.
func MinDetectableChange(n, m int, s Shift, center, alpha float64) float64 {
	if MinPValue(n, m) >= alpha || !(s.Confidence > 0 && s.Confidence < 1) {
		return math.Inf(1)
	}
	if s.Hi == s.Lo {
		return 0
	}
	if center == 0 {
		return math.Inf(1)
	}
	se := (s.Hi - s.Lo) / 2 / distuv.UnitNormal.Quantile((1+s.Confidence)/2)
	z := distuv.UnitNormal.Quantile(1-alpha/2) + distuv.UnitNormal.Quantile(MDCPower)
	return z * se / math.Abs(center)
}

// CV is the coefficient of variation of values: the sample standard deviation over the
// absolute mean. It is 0 for fewer than two values or no spread, and false when the mean
// is 0 while the values spread (no finite CV).
func CV(values []float64) (float64, bool) {
	if len(values) < 2 {
		return 0, true
	}
	mean, sd := stat.MeanStdDev(values, nil)
	switch {
	case sd == 0:
		return 0, true
	case mean == 0:
		return 0, false
	}
	return sd / math.Abs(mean), true
}
