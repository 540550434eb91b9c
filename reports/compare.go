package reports

import (
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"

	"golang.org/x/perf/benchmath"

	"github.com/edgebpf/edgebpf/stats"
)

// CompareOptions set what counts as a regression.
type CompareOptions struct {
	// Threshold is the relative change of the median, as a fraction (0.05 for 5 %), that a
	// significant difference must exceed to be a regression or an improvement.
	Threshold float64
	// Alpha is the significance level of the Mann-Whitney U test; 0 means 0.05.
	Alpha float64
}

// The verdicts of a Change.
const (
	VerdictRegression  = "regression"
	VerdictImprovement = "improvement"
	VerdictSame        = "same"
)

// Change compares one metric of one experiment on one data plane (at one x) between a
// baseline and a new run.
type Change struct {
	Experiment string  `json:"experiment"`
	DataPlane  string  `json:"dataplane"`
	Metric     string  `json:"metric"`
	Unit       string  `json:"unit"`
	Better     string  `json:"better"`
	X          XValue  `json:"x,omitzero"`
	XUnit      string  `json:"x_unit,omitempty"`
	BaseN      int     `json:"base_n"`
	BaseMedian float64 `json:"base_median"`
	NewN       int     `json:"new_n"`
	NewMedian  float64 `json:"new_median"`
	// Change is (new − base) / |base| of the medians; nil when the base median is 0 and
	// the new one is not.
	Change  *float64 `json:"change"`
	P       float64  `json:"p"`
	Verdict string   `json:"verdict"`
	Note    string   `json:"note,omitempty"`
}

// Comparison is the result of comparing two results directories.
type Comparison struct {
	Base         string   `json:"base"`
	New          string   `json:"new"`
	Threshold    float64  `json:"threshold"`
	Alpha        float64  `json:"alpha"`
	Changes      []Change `json:"changes"`
	OnlyBase     []Entity `json:"only_base"`
	OnlyNew      []Entity `json:"only_new"`
	Regressions  int      `json:"regressions"`
	Improvements int      `json:"improvements"`
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
	values      []float64
}

type cmpSide struct {
	dir    string
	order  []cmpKey
	groups map[cmpKey]*cmpGroup
	exps   []string
}

// readSide reads a results directory's raw samples grouped for comparison.
func readSide(dir, role string) (*cmpSide, error) {
	if _, err := ReadMeta(dir); err != nil {
		return nil, &InputError{fmt.Errorf("%s: %w", role, err)}
	}
	rows, err := ReadRaw(dir)
	if err != nil {
		return nil, &InputError{err}
	}
	if len(rows) == 0 {
		return nil, &InputError{fmt.Errorf("%s %s holds no raw samples (raw/<experiment>/<dataplane>.csv): nothing to compare", role, dir)}
	}
	s := &cmpSide{dir: dir, groups: map[cmpKey]*cmpGroup{}}
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
// directories: medians, their relative change, and the p-value of a Mann-Whitney U test
// on the raw samples (golang.org/x/perf/benchmath, as benchstat does). A change is a
// regression only when it is worse than the threshold in the metric's better-direction
// and significant (p < alpha). Entries present on one side only are listed. Unusable input
// is an *InputError.
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
	common := false
	for _, e := range base.exps {
		common = common || slices.Contains(nw.exps, e)
	}
	if !common {
		return nil, &InputError{fmt.Errorf("baseline %s (%s) and new run %s (%s) have no experiment in common: compare runs of the same experiments",
			baseDir, strings.Join(base.exps, ", "), newDir, strings.Join(nw.exps, ", "))}
	}
	c := &Comparison{Base: baseDir, New: newDir, Threshold: o.Threshold, Alpha: o.Alpha, Changes: []Change{}, OnlyBase: []Entity{}, OnlyNew: []Entity{}}
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
		switch ch.Verdict {
		case VerdictRegression:
			c.Regressions++
		case VerdictImprovement:
			c.Improvements++
		}
		c.Changes = append(c.Changes, ch)
	}
	if len(errs) > 0 {
		return nil, &InputError{errors.Join(errs...)}
	}
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

func compareGroup(k cmpKey, bg, ng *cmpGroup, o CompareOptions) Change {
	m := lookupMetric(k.metric, bg.unit)
	ch := Change{Experiment: k.exp, DataPlane: k.dp, Metric: k.metric, Unit: bg.unit, Better: string(m.Better),
		X: XValue(k.x), XUnit: bg.xUnit, BaseN: len(bg.values), NewN: len(ng.values), P: 1, Verdict: VerdictSame}
	if ch.BaseN == 0 || ch.NewN == 0 {
		ch.Note = "no finite samples on one side"
		return ch
	}
	bs, ns := stats.Summarize(bg.values), stats.Summarize(ng.values)
	ch.BaseMedian, ch.NewMedian = bs.Median, ns.Median
	diff := ns.Median - bs.Median
	switch {
	case bs.Median != 0:
		r := diff / math.Abs(bs.Median)
		ch.Change = &r
	case diff == 0:
		r := 0.0
		ch.Change = &r
	}
	cmp := benchmath.AssumeNothing.Compare(
		benchmath.NewSample(slices.Clone(bg.values), &benchmath.Thresholds{CompareAlpha: o.Alpha}),
		benchmath.NewSample(slices.Clone(ng.values), &benchmath.Thresholds{CompareAlpha: o.Alpha}))
	ch.P = cmp.P
	var warn []string
	for _, w := range cmp.Warnings {
		warn = append(warn, w.Error())
	}
	beyond := func(sign float64) bool { // the change moves in direction sign by more than the threshold
		if ch.Change == nil {
			return diff*sign > 0
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
		return ch
	}
	significant := cmp.P < o.Alpha
	switch {
	case worse && significant:
		ch.Verdict = VerdictRegression
	case better && significant:
		ch.Verdict = VerdictImprovement
	case (worse || better) && !significant:
		ch.Note = "not significant"
	case significant:
		ch.Note = fmt.Sprintf("within ±%s", pct(o.Threshold))
	}
	if len(warn) > 0 {
		if ch.Note != "" {
			ch.Note += "; "
		}
		ch.Note += strings.Join(warn, "; ")
	}
	return ch
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

// --- output ----------------------------------------------------------------------------

// CompareFormats are the output formats of WriteComparison.
var CompareFormats = []string{"text", "csv", "json", "markdown"}

// WriteComparison writes c in one of CompareFormats.
func WriteComparison(w io.Writer, c *Comparison, format string) error {
	switch format {
	case "text", "":
		return writeCompareText(w, c)
	case "csv":
		return writeCompareCSV(w, c)
	case "json":
		b, err := json.MarshalIndent(c, "", "  ")
		if err != nil {
			return err
		}
		_, err = w.Write(append(b, '\n'))
		return err
	case "markdown":
		return writeCompareMarkdown(w, c)
	}
	return fmt.Errorf("unknown format %q: choose from %s", format, strings.Join(CompareFormats, ", "))
}

func (ch *Change) changeString() string {
	switch {
	case ch.BaseN == 0 || ch.NewN == 0:
		return "–"
	case ch.Change == nil:
		return "from 0"
	}
	return fmt.Sprintf("%+.2f %%", *ch.Change*100)
}

func (ch *Change) pString() string {
	if ch.BaseN == 0 || ch.NewN == 0 {
		return "–"
	}
	if ch.P < 0.001 {
		return "<0.001"
	}
	return strconv.FormatFloat(ch.P, 'f', 3, 64)
}

func (ch *Change) verdictString() string {
	if ch.Note == "" {
		return ch.Verdict
	}
	return ch.Verdict + " (" + ch.Note + ")"
}

func (ch *Change) cells() []string {
	return []string{ch.Experiment, ch.DataPlane, ch.Metric, FormatX(string(ch.X), ch.XUnit),
		FormatValue(ch.BaseMedian, ch.Unit) + " n=" + strconv.Itoa(ch.BaseN),
		FormatValue(ch.NewMedian, ch.Unit) + " n=" + strconv.Itoa(ch.NewN),
		ch.changeString(), ch.pString(), ch.verdictString()}
}

var compareHeader = []string{"experiment", "dataplane", "metric", "x", "base median", "new median", "change", "p", "verdict"}

func (c *Comparison) footer() string {
	return fmt.Sprintf("%d compared: %d regressions, %d improvements, %d unchanged (threshold %s, alpha %g; a regression is worse than the threshold and p < alpha)",
		len(c.Changes), c.Regressions, c.Improvements, len(c.Changes)-c.Regressions-c.Improvements, pct(c.Threshold), c.Alpha)
}

func writeCompareText(w io.Writer, c *Comparison) error {
	fmt.Fprintf(w, "baseline: %s\nnew:      %s\n\n", c.Base, c.New)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, strings.Join(compareHeader, "\t"))
	for i := range c.Changes {
		fmt.Fprintln(tw, strings.Join(c.Changes[i].cells(), "\t"))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, side := range []struct {
		name string
		list []Entity
	}{{"baseline", c.OnlyBase}, {"new run", c.OnlyNew}} {
		if len(side.list) > 0 {
			fmt.Fprintf(w, "\nonly in the %s (%d):\n", side.name, len(side.list))
			for _, e := range side.list {
				fmt.Fprintf(w, "  %s\n", e)
			}
		}
	}
	_, err := fmt.Fprintf(w, "\n%s\n", c.footer())
	return err
}

func writeCompareMarkdown(w io.Writer, c *Comparison) error {
	var b strings.Builder
	fmt.Fprintf(&b, "# edgebpf compare\n\nbaseline `%s`, new `%s`\n\n", c.Base, c.New)
	t := Table{Header: compareHeader}
	for i := range c.Changes {
		cells := c.Changes[i].cells()
		if c.Changes[i].Verdict == VerdictRegression {
			cells[len(cells)-1] = "**" + cells[len(cells)-1] + "**"
		}
		t.Rows = append(t.Rows, cells)
	}
	md := t.Markdown()
	b.WriteString(md[strings.Index(md, "|"):])
	for _, side := range []struct {
		name string
		list []Entity
	}{{"baseline", c.OnlyBase}, {"new run", c.OnlyNew}} {
		if len(side.list) > 0 {
			fmt.Fprintf(&b, "\nOnly in the %s:\n\n", side.name)
			for _, e := range side.list {
				fmt.Fprintf(&b, "- %s\n", e)
			}
		}
	}
	fmt.Fprintf(&b, "\n%s\n", c.footer())
	_, err := io.WriteString(w, b.String())
	return err
}

func writeCompareCSV(w io.Writer, c *Comparison) error {
	cw := csv.NewWriter(w)
	f := func(v float64) string { return strconv.FormatFloat(v, 'g', -1, 64) }
	_ = cw.Write([]string{"experiment", "dataplane", "metric", "unit", "better", "x", "x_unit",
		"base_n", "base_median", "new_n", "new_median", "change", "p", "verdict", "note"})
	for _, ch := range c.Changes {
		change := ""
		if ch.Change != nil {
			change = f(*ch.Change)
		}
		_ = cw.Write([]string{ch.Experiment, ch.DataPlane, ch.Metric, ch.Unit, ch.Better, string(ch.X), ch.XUnit,
			strconv.Itoa(ch.BaseN), f(ch.BaseMedian), strconv.Itoa(ch.NewN), f(ch.NewMedian), change, f(ch.P), ch.Verdict, ch.Note})
	}
	for _, side := range []struct {
		verdict string
		list    []Entity
	}{{"only-base", c.OnlyBase}, {"only-new", c.OnlyNew}} {
		for _, e := range side.list {
			_ = cw.Write([]string{e.Experiment, e.DataPlane, e.Metric, "", "", string(e.X), e.XUnit, "", "", "", "", "", "", side.verdict, ""})
		}
	}
	cw.Flush()
	return cw.Error()
}
