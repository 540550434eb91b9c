package reports

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"golang.org/x/perf/benchmath"
)

// CompareOptions set what counts as a regression.
type CompareOptions struct {
	// Threshold is the relative change, as a fraction (0.05 for 5 %), that a significant
	// difference must exceed to be a regression or an improvement.
	Threshold float64
	// Alpha is the significance level of the Mann-Whitney U test on the repetitions'
	// values, and 1 − Alpha the level of the change's confidence interval; 0 means 0.05.
	Alpha float64
	// RelativeTo, when set, names a data plane both runs measured: every other data
	// plane's repetitions are divided by its same repetition, and only these ratios are
	// compared, so that a machine that is slower during one run than during the other
	// (a loaded CI host) moves both sides of each ratio alike.
	RelativeTo string
	// Force compares runs that the metadata guard would refuse (different profile,
	// experiment parameters, topology or results schema); the Comparison records that it
	// was forced and what differed.
	Force bool
}

// The verdicts of a Change.
const (
	VerdictRegression  = "regression"
	VerdictImprovement = "improvement"
	VerdictSame        = "same"
	// VerdictTooFewReps says that a side has too few repetitions for the Mann-Whitney test
	// to reach alpha at all: no verdict can be given.
	VerdictTooFewReps = "too few reps"
)

// The flags of a Change whose spread makes it unfit for gating.
const (
	// FlagNoisy: a side's repetition values vary by more than MaxRepCV.
	FlagNoisy = "noisy"
	// FlagInsensitive: the minimum detectable change exceeds the threshold, so a
	// regression as large as the threshold would likely go unnoticed.
	FlagInsensitive = "insensitive"
)

// MaxRepCV is the coefficient of variation of a side's repetition values above which a
// Change is flagged FlagNoisy. Chosen because at 10 % of normal spread 8 repetitions a side
// cannot detect less than about 14 %, well above the 5 - 10 % thresholds a gate uses, and
// because a well-isolated run of this harness keeps its
// repetitions within a few percent: beyond 10 % something else (load, frequency scaling,
// a cold cache in the first repetition) moved the numbers.
const MaxRepCV = 0.10

// Change compares one metric of one experiment on one data plane (at one x) between a
// baseline and a new run. The repetition is the unit of comparison: each repetition's
// samples are reduced to one value by the metric's per-repetition aggregate
// (stats.AggregateOf), and the test, the change with its interval, the minimum detectable
// change and the coefficients of variation all come from those values. The pooled medians
// and sample counts only describe the data.
type Change struct {
	Experiment string `json:"experiment"`
	DataPlane  string `json:"dataplane"`
	Metric     string `json:"metric"`
	Unit       string `json:"unit"`
	Better     string `json:"better"`
	X          XValue `json:"x,omitzero"`
	XUnit      string `json:"x_unit,omitempty"`
	// BaseN and NewN count the finite samples, BaseMedian and NewMedian are their pooled
	// medians.
	BaseN      int     `json:"base_n"`
	BaseMedian float64 `json:"base_median"`
	NewN       int     `json:"new_n"`
	NewMedian  float64 `json:"new_median"`
	// Aggregate is how a repetition's samples became its value: "median" or "mean".
	Aggregate string `json:"aggregate"`
	// BaseReps and NewReps count the repetitions with a finite value; BaseRepMedian and
	// NewRepMedian are the medians of the repetitions' values.
	BaseReps      int     `json:"base_reps"`
	NewReps       int     `json:"new_reps"`
	BaseRepMedian float64 `json:"base_rep_median"`
	NewRepMedian  float64 `json:"new_rep_median"`
	// BaseCV and NewCV are the coefficients of variation of the repetitions' values; nil
	// when a side's values spread around a mean of 0.
	BaseCV *float64 `json:"base_cv"`
	NewCV  *float64 `json:"new_cv"`
	// Change is the Hodges-Lehmann shift of the repetitions' values from baseline to new
	// run relative to |BaseRepMedian|, and ChangeLo and ChangeHi its distribution-free
	// confidence interval at level Confidence (stats.HodgesLehmann). All nil when the
	// baseline's repetitions are at 0 and the new run's are not.
	Change     *float64 `json:"change"`
	ChangeLo   *float64 `json:"change_lo"`
	ChangeHi   *float64 `json:"change_hi"`
	Confidence float64  `json:"confidence"`
	// P is the p-value of the Mann-Whitney U test on the repetitions' values, MinP the
	// smallest p the test can give with these numbers of repetitions.
	P    float64 `json:"p"`
	MinP float64 `json:"min_p"`
	// MDC is the minimum detectable change (relative, stats.MinDetectableChange: from the
	// Hodges-Lehmann interval, so rank-based like the test) of this pair at Alpha; nil when
	// no change can be detected at all.
	MDC     *float64 `json:"mdc"`
	Verdict string   `json:"verdict"`
	// Flags say why the row is unfit for gating: FlagNoisy, FlagInsensitive.
	Flags []string `json:"flags,omitempty"`
	Note  string   `json:"note,omitempty"`
}

// Comparison is the result of comparing two results directories.
type Comparison struct {
	Base      string  `json:"base"`
	New       string  `json:"new"`
	Threshold float64 `json:"threshold"`
	Alpha     float64 `json:"alpha"`
	// MaxCV is the coefficient of variation above which a row is flagged noisy.
	MaxCV float64 `json:"max_cv"`
	// RelativeTo is CompareOptions.RelativeTo: the values are ratios to that data plane.
	RelativeTo string `json:"relative_to,omitempty"`
	// Forced says that the metadata guard found Differences and the runs were compared
	// anyway (CompareOptions.Force).
	Forced      bool     `json:"forced"`
	Differences []string `json:"differences,omitempty"`
	// Warnings list differences of the machines (kernel, CPU model, cores, pinning,
	// governor) that make the comparison less trustworthy.
	Warnings []string `json:"warnings"`
	Changes  []Change `json:"changes"`
	OnlyBase []Entity `json:"only_base"`
	OnlyNew  []Entity `json:"only_new"`
	// Regressions counts the regressions the gate fails on. UnfitRegressions counts those on
	// noisy rows that do not clear the stricter bound count applies: shown, not gated on. A
	// row only flagged insensitive still gates: a change the test did detect is real however
	// large the MDC.
	Regressions      int `json:"regressions"`
	UnfitRegressions int `json:"unfit_regressions"`
	Improvements     int `json:"improvements"`
	// TooFewReps counts the rows without a verdict for too few repetitions, Unfit the
	// rows flagged unfit for gating.
	TooFewReps int `json:"too_few_reps"`
	Unfit      int `json:"unfit"`
}

// count tallies the verdicts. A regression on a noisy row (a side's CV above MaxCV) gates only
// when its p also clears the Bonferroni bound over every row compared (alpha / rows): over
// the tens of rows a run compares, the test's alpha lands its false alarms on such rows (a real
// A/A pair of the ci profile on this machine failed on cpu_softirq, CV 76 % and 51 %, p 0.038
// among 21 rows), while a large real change there still clears it (p < 0.001).
func (c *Comparison) count(alpha float64) {
	strict := alpha / float64(max(len(c.Changes), 1))
	for i := range c.Changes {
		ch := &c.Changes[i]
		switch ch.Verdict {
		case VerdictRegression:
			if !slices.Contains(ch.Flags, FlagNoisy) || ch.P < strict {
				c.Regressions++
			} else {
				c.UnfitRegressions++
				ch.Note = joinNote(ch.Note, fmt.Sprintf("noisy: not gated on unless p < %.2g (alpha over %d rows)", strict, len(c.Changes)))
			}
		case VerdictImprovement:
			c.Improvements++
		case VerdictTooFewReps:
			c.TooFewReps++
		}
		if len(ch.Flags) > 0 {
			c.Unfit++
		}
	}
}

// Entity names one compared series: a metric of an experiment on a data plane, at x.
type Entity struct {
	Experiment string `json:"experiment"`
	DataPlane  string `json:"dataplane"`
	Metric     string `json:"metric"`
	X          XValue `json:"x,omitzero"`
	XUnit      string `json:"x_unit,omitempty"`
}

// String renders "experiment/dataplane metric @ x".
func (e Entity) String() string {
	s := e.Experiment + "/" + e.DataPlane + " " + e.Metric
	if e.X != "" {
		s += " @ " + FormatX(string(e.X), e.XUnit)
	}
	return s
}

func entityOf(k cmpKey, xUnit string) Entity {
	return Entity{Experiment: k.exp, DataPlane: k.dp, Metric: k.metric, X: XValue(k.x), XUnit: xUnit}
}

// InputError says that the input of a comparison or a report cannot be used: not a results
// directory, a malformed raw file, runs that measured different things.
type InputError struct{ Err error }

// Error returns the underlying error's message.
func (e *InputError) Error() string { return e.Err.Error() }

// Unwrap returns the underlying error.
func (e *InputError) Unwrap() error { return e.Err }

type cmpKey struct {
	exp, dp, metric, x string
}

type cmpGroup struct {
	unit, xUnit string
	// reps and values are parallel: every finite sample and its repetition.
	reps   []int
	values []float64
}

type cmpSide struct {
	dir    string
	meta   *Meta
	order  []cmpKey
	groups map[cmpKey]*cmpGroup
	exps   []string
}

// readSide reads a results directory's raw samples grouped for comparison.
func readSide(dir, role string) (*cmpSide, error) {
	meta, err := ReadMeta(dir)
	if err != nil {
		return nil, &InputError{fmt.Errorf("%s: %w", role, err)}
	}
	rows, err := ReadRaw(dir)
	if err != nil {
		return nil, &InputError{err}
	}
	if len(rows) == 0 {
		return nil, &InputError{fmt.Errorf("%s %s holds no raw samples (raw/<experiment>/<dataplane>.csv): nothing to compare", role, dir)}
	}
	s := &cmpSide{dir: dir, meta: meta, groups: map[cmpKey]*cmpGroup{}}
	type mk struct{ exp, dp, metric string }
	units := map[mk][2]string{}
	for _, r := range rows {
		m := mk{r.Experiment, r.DataPlane, r.Metric}
		if u, ok := units[m]; !ok {
			units[m] = [2]string{r.Unit, r.XUnit}
		} else if u[0] != r.Unit || (r.X != "" && u[1] != "" && u[1] != r.XUnit) {
			return nil, &InputError{fmt.Errorf("%s %s: metric %s of %s/%s has units %q and %q (x: %q and %q) in one run: fix the raw file", role, dir, r.Metric, r.Experiment, r.DataPlane, u[0], r.Unit, u[1], r.XUnit)}
		} else if u[1] == "" && r.X != "" {
			units[m] = [2]string{u[0], r.XUnit}
		}
		k := cmpKey{r.Experiment, r.DataPlane, r.Metric, r.X}
		g := s.groups[k]
		if g == nil {
			g = &cmpGroup{unit: r.Unit, xUnit: r.XUnit}
			s.groups[k] = g
			s.order = append(s.order, k)
			if !slices.Contains(s.exps, r.Experiment) {
				s.exps = append(s.exps, r.Experiment)
			}
		}
		if finite(r.Value) {
			g.reps = append(g.reps, r.Rep)
			g.values = append(g.values, r.Value)
		}
	}
	sortCmpKeys(s.order)
	return s, nil
}

// sortCmpKeys keeps experiments, data planes and metrics in order of first appearance and
// sorts the x values of each metric numerically where they are numbers.
func sortCmpKeys(keys []cmpKey) {
	first := map[cmpKey]int{}
	for i, k := range keys {
		mk := cmpKey{k.exp, k.dp, k.metric, ""}
		if _, ok := first[mk]; !ok {
			first[mk] = i
		}
	}
	xs := map[cmpKey][]string{}
	for _, k := range keys {
		mk := cmpKey{k.exp, k.dp, k.metric, ""}
		xs[mk] = append(xs[mk], k.x)
	}
	xrank := map[cmpKey]int{}
	for mk, list := range xs {
		for i, x := range sortXsEmptyFirst(list) {
			xrank[cmpKey{mk.exp, mk.dp, mk.metric, x}] = i
		}
	}
	slices.SortStableFunc(keys, func(a, b cmpKey) int {
		fa, fb := first[cmpKey{a.exp, a.dp, a.metric, ""}], first[cmpKey{b.exp, b.dp, b.metric, ""}]
		if fa != fb {
			return fa - fb
		}
		return xrank[a] - xrank[b]
	})
}

// sortXsEmptyFirst returns xs with "" first and the rest as sortXs orders them.
func sortXsEmptyFirst(xs []string) []string {
	var out, rest []string
	for _, x := range xs {
		if x == "" {
			out = append(out, x)
		} else {
			rest = append(rest, x)
		}
	}
	sortXs(rest)
	return append(out, rest...)
}

// Compare compares every (experiment, data plane, metric, x) present in both results
// directories, with the repetition as the unit (benchstat's model): each repetition's
// samples become one value (stats.AggregateOf), and the Mann-Whitney U test
// (golang.org/x/perf/benchmath), the Hodges-Lehmann change with its confidence interval, the
// minimum detectable change and the coefficients of variation come from those values; samples
// within a repetition are not independent, so testing them pooled would call any drift
// between repetitions significant. A change is a regression only when it is significant
// (p < alpha) and its point estimate is worse than the threshold in the metric's
// better-direction. Where a side has too few repetitions for the test to reach alpha at
// all, the row says so and has no verdict. Entries present on one side only are listed.
//
// Before comparing, the metadata guard reads both meta.json files: runs that differ in
// profile, the parameters of an experiment both ran, topology or results schema are refused
// with a *MismatchError (wrapped in an *InputError) unless o.Force; differences of the
// machine are Warnings. Unusable input is an *InputError.
func Compare(baseDir, newDir string, o CompareOptions) (*Comparison, error) {
	if o.Alpha == 0 {
		o.Alpha = benchmath.DefaultThresholds.CompareAlpha
	}
	if !(o.Threshold >= 0) || !(o.Alpha > 0 && o.Alpha < 1) {
		return nil, &InputError{fmt.Errorf("threshold %v must be at least 0 and alpha %v between 0 and 1", o.Threshold, o.Alpha)}
	}
	base, err := readSide(baseDir, "baseline")
	if err != nil {
		return nil, err
	}
	nw, err := readSide(newDir, "new run")
	if err != nil {
		return nil, err
	}
	if o.RelativeTo != "" {
		if err := base.relativeTo(o.RelativeTo, "baseline"); err != nil {
			return nil, err
		}
		if err := nw.relativeTo(o.RelativeTo, "new run"); err != nil {
			return nil, err
		}
	}
	differences, warnings := guard(base.meta, nw.meta)
	if len(differences) > 0 && !o.Force {
		return nil, &InputError{&MismatchError{Differences: differences}}
	}
	common := false
	for _, e := range base.exps {
		common = common || slices.Contains(nw.exps, e)
	}
	if !common {
		return nil, &InputError{fmt.Errorf("baseline %s (%s) and new run %s (%s) have no experiment in common: compare runs of the same experiments",
			baseDir, strings.Join(base.exps, ", "), newDir, strings.Join(nw.exps, ", "))}
	}
	c := &Comparison{Base: baseDir, New: newDir, Threshold: o.Threshold, Alpha: o.Alpha, MaxCV: MaxRepCV, RelativeTo: o.RelativeTo,
		Forced: len(differences) > 0, Differences: differences, Warnings: warnings,
		Changes: []Change{}, OnlyBase: []Entity{}, OnlyNew: []Entity{}}
	if c.Warnings == nil {
		c.Warnings = []string{}
	}
	var errs []error
	for _, k := range base.order {
		bg := base.groups[k]
		ng, ok := nw.groups[k]
		if !ok {
			c.OnlyBase = append(c.OnlyBase, entityOf(k, bg.xUnit))
			continue
		}
		if bg.unit != ng.unit || bg.xUnit != ng.xUnit {
			errs = append(errs, fmt.Errorf("%s is in %s%s in the baseline but in %s%s in the new run: the runs cannot be compared",
				entityOf(k, bg.xUnit), bg.unit, xUnitSuffix(bg.xUnit), ng.unit, xUnitSuffix(ng.xUnit)))
			continue
		}
		ch := compareGroup(k, bg, ng, o)
		censorNote(&ch, k, base, nw)
		c.Changes = append(c.Changes, ch)
	}
	if len(errs) > 0 {
		return nil, &InputError{errors.Join(errs...)}
	}
	c.count(o.Alpha)
	for _, k := range nw.order {
		if _, ok := base.groups[k]; !ok {
			c.OnlyNew = append(c.OnlyNew, entityOf(k, nw.groups[k].xUnit))
		}
	}
	return c, nil
}

func xUnitSuffix(u string) string {
	if u == "" {
		return ""
	}
	return " (x in " + u + ")"
}
