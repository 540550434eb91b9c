package reports

import (
	"fmt"
	"math"
	"slices"
	"strconv"

	"golang.org/x/perf/benchmath"

	"github.com/edgebpf/edgebpf/stats"
)

// compareGroup compares one series of the two runs; see Compare for the method.
func compareGroup(k cmpKey, bg, ng *cmpGroup, o CompareOptions) Change {
	m := lookupMetric(k.metric, bg.unit)
	agg := stats.AggregateOf(k.metric)
	ch := Change{Experiment: k.exp, DataPlane: k.dp, Metric: k.metric, Unit: bg.unit, Better: string(m.Better),
		X: XValue(k.x), XUnit: bg.xUnit, BaseN: len(bg.values), NewN: len(ng.values), Aggregate: string(agg),
		P: 1, MinP: 1, Verdict: VerdictSame}
	if ch.BaseN == 0 || ch.NewN == 0 {
		ch.Note = "no finite samples on one side"
		return ch
	}
	ch.BaseMedian, ch.NewMedian = stats.Summarize(bg.values).Median, stats.Summarize(ng.values).Median

	bv, nv := repValues(bg, agg), repValues(ng, agg)
	shift, p := describeChange(&ch, bv, nv, o)
	if allEqual(bv, nv) {
		// Every repetition of both runs gave the same value: nothing changed, however few
		// repetitions there are.
		ch.Note = "all samples are equal"
		return ch
	}
	if ch.MinP >= o.Alpha {
		ch.Verdict = VerdictTooFewReps
		ch.Note = fmt.Sprintf("%d and %d repetitions: Mann-Whitney cannot reach p < %g (smallest p %.3g); run at least %d a side",
			ch.BaseReps, ch.NewReps, o.Alpha, ch.MinP, repsNeeded(o.Alpha))
		return ch
	}
	judge(&ch, m, shift.Estimate, p < o.Alpha, o)
	return ch
}

// describeChange fills in what the repetitions' values say of a change, verdict aside: their
// medians and CVs, the Hodges-Lehmann shift with its interval, the smallest attainable p, the
// minimum detectable change, the gating flags; it returns the shift and the test's p.
func describeChange(ch *Change, bv, nv []float64, o CompareOptions) (stats.Shift, float64) {
	ch.BaseReps, ch.NewReps = len(bv), len(nv)
	ch.BaseRepMedian, ch.NewRepMedian = stats.Median.Of(bv), stats.Median.Of(nv)
	if cv, ok := stats.CV(bv); ok {
		ch.BaseCV = &cv
	}
	if cv, ok := stats.CV(nv); ok {
		ch.NewCV = &cv
	}

	// The change: the Hodges-Lehmann shift of the repetitions' values and its interval at
	// 1 − alpha, relative to the baseline's median repetition.
	shift := stats.HodgesLehmann(bv, nv, 1-o.Alpha)
	ch.Confidence = shift.Confidence
	rel := func(v float64) *float64 {
		switch {
		case ch.BaseRepMedian != 0:
			r := v / math.Abs(ch.BaseRepMedian)
			return &r
		case v == 0:
			r := 0.0
			return &r
		}
		return nil
	}
	ch.Change, ch.ChangeLo, ch.ChangeHi = rel(shift.Estimate), rel(shift.Lo), rel(shift.Hi)
	if ch.Change != nil && (ch.ChangeLo == nil || ch.ChangeHi == nil) || shift.Confidence == 0 {
		// From 0 there is no relative interval; with one repetition a side, no interval.
		ch.ChangeLo, ch.ChangeHi = nil, nil
	}

	ch.MinP = stats.MinPValue(ch.BaseReps, ch.NewReps)
	mdc := stats.MinDetectableChange(ch.BaseReps, ch.NewReps, shift, ch.BaseRepMedian, o.Alpha)
	if !math.IsInf(mdc, 0) {
		ch.MDC = &mdc
	}
	ch.Flags = gatingFlags(ch, o.Threshold)

	cmp := benchmath.AssumeNothing.Compare(
		benchmath.NewSample(slices.Clone(bv), &benchmath.Thresholds{CompareAlpha: o.Alpha}),
		benchmath.NewSample(slices.Clone(nv), &benchmath.Thresholds{CompareAlpha: o.Alpha}))
	ch.P = cmp.P
	return shift, cmp.P
}

// judge gives the verdict of a change whose test was significant or not: a regression or an
// improvement needs significance and a change beyond the threshold in the metric's
// direction; otherwise the note says why not.
func judge(ch *Change, m stats.Metric, estimate float64, significant bool, o CompareOptions) {
	// beyond reports whether the change's point estimate moves in direction sign by more
	// than the threshold. The point estimate, not the interval's far end: the test already
	// guards against noise, and requiring the whole interval beyond the threshold would
	// halve the gate's power at the repetition counts CI can afford.
	beyond := func(sign float64) bool {
		if ch.Change == nil {
			return estimate*sign > 0
		}
		return *ch.Change*sign > o.Threshold
	}
	var worse, better bool
	switch m.Better {
	case stats.Lower:
		worse, better = beyond(1), beyond(-1)
	case stats.Higher:
		worse, better = beyond(-1), beyond(1)
	default:
		ch.Note = "unknown better-direction: no verdict"
		return
	}
	switch {
	case worse && significant:
		ch.Verdict = VerdictRegression
	case better && significant:
		ch.Verdict = VerdictImprovement
	case (worse || better) && !significant:
		ch.Note = "not significant"
	case significant:
		ch.Note = fmt.Sprintf("within ±%s", pct(o.Threshold))
	case ch.MDC != nil:
		ch.Note = fmt.Sprintf("no change detected; nothing under %s could have been", pct(roundUp(*ch.MDC)))
	default:
		ch.Note = "no change detected"
	}
}

// gatingFlags returns why ch is unfit for gating: a side's repetitions spread by more
// than MaxRepCV (or around 0), or the pair cannot detect a change the size of the
// threshold.
func gatingFlags(ch *Change, threshold float64) []string {
	var flags []string
	for _, cv := range []*float64{ch.BaseCV, ch.NewCV} {
		if cv == nil || *cv > MaxRepCV {
			flags = append(flags, FlagNoisy)
			break
		}
	}
	if ch.MDC == nil || *ch.MDC > threshold {
		flags = append(flags, FlagInsensitive)
	}
	return flags
}

// repValues returns the values of g's repetitions under agg.
func repValues(g *cmpGroup, agg stats.Aggregate) []float64 {
	rv := stats.RepValues(g.reps, g.values, agg)
	out := make([]float64, len(rv))
	for i, r := range rv {
		out[i] = r.Value
	}
	return out
}

// repsNeeded is the smallest number of repetitions a side with which the Mann-Whitney
// test can reach alpha.
func repsNeeded(alpha float64) int {
	n := 1
	for n < 1000 && stats.MinPValue(n, n) >= alpha {
		n++
	}
	return n
}

func allEqual(a, b []float64) bool {
	for _, v := range append(slices.Clone(a), b...) {
		if v != a[0] {
			return false
		}
	}
	return true
}

// roundUp rounds a fraction up to two significant digits of its percentage, so that "nothing
// under 7.3 %" never promises more than was computed.
func roundUp(f float64) float64 {
	if f <= 0 {
		return f
	}
	p := f * 100
	scale := math.Pow(10, math.Floor(math.Log10(p))-1)
	return math.Ceil(p/scale) * scale / 100
}

func pct(f float64) string { return strconv.FormatFloat(f*100, 'g', 4, 64) + " %" }

// mannWhitney is the p-value of the Mann-Whitney U test of two samples; false when either
// has no finite value.
func mannWhitney(a, b []float64) (float64, bool) {
	fa, fb := sortedFinite(a), sortedFinite(b)
	if len(fa) == 0 || len(fb) == 0 {
		return 0, false
	}
	c := benchmath.AssumeNothing.Compare(benchmath.NewSample(fa, &benchmath.DefaultThresholds), benchmath.NewSample(fb, &benchmath.DefaultThresholds))
	return c.P, true
}
