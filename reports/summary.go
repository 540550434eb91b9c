package reports

import (
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strconv"

	"github.com/edgebpf/edgebpf/bench/stats"
	"github.com/edgebpf/edgebpf/internal/atomicfile"
)

// Entry is one object of summary.json: the summary of one metric of one experiment on one
// data plane, at one x where the metric is a curve.
type Entry struct {
	Experiment string `json:"experiment"`
	DataPlane  string `json:"dataplane"`
	Metric     string `json:"metric"`
	Unit       string `json:"unit"`
	Better     string `json:"better"`
	X          XValue `json:"x,omitzero"`
	XUnit      string `json:"x_unit,omitempty"`
	stats.Summary
}

// XValue is a curve's x: a number (a rate, a client count) or a label (a phase). It is
// written to JSON as a number when it parses as one, else as a string.
type XValue string

// MarshalJSON writes numbers as JSON numbers.
func (x XValue) MarshalJSON() ([]byte, error) {
	if f, err := strconv.ParseFloat(string(x), 64); err == nil {
		return json.Marshal(f)
	}
	return json.Marshal(string(x))
}

// UnmarshalJSON accepts a number or a string.
func (x *XValue) UnmarshalJSON(b []byte) error {
	var f float64
	if err := json.Unmarshal(b, &f); err == nil {
		*x = XValue(strconv.FormatFloat(f, 'f', -1, 64))
		return nil
	}
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("x must be a number or a string: %w", err)
	}
	*x = XValue(s)
	return nil
}

// Summarize computes the summary entries of rows, ordered by experiment, data plane (each in
// order of first appearance), then metric and x as stats.GroupSamples orders them.
func Summarize(rows []Row) ([]Entry, error) {
	type key struct{ exp, dp string }
	var order []key
	byKey := map[key][]stats.Sample{}
	var errs []error
	for _, r := range rows {
		k := key{r.Experiment, r.DataPlane}
		if _, ok := byKey[k]; !ok {
			order = append(order, k)
		}
		m, ok := stats.Lookup(r.Metric)
		if !ok {
			errs = append(errs, fmt.Errorf("unknown metric %q in %s/%s", r.Metric, r.Experiment, r.DataPlane))
			continue
		}
		byKey[k] = append(byKey[k], stats.Sample{Rep: r.Rep, Seq: r.Seq, T: r.T, X: r.X, XUnit: r.XUnit, Metric: m, Value: r.Value})
	}
	var out []Entry
	for _, k := range order {
		groups, err := stats.GroupSamples(byKey[k])
		if err != nil {
			errs = append(errs, fmt.Errorf("%s/%s: %w", k.exp, k.dp, err))
			continue
		}
		for _, g := range groups {
			out = append(out, Entry{
				Experiment: k.exp, DataPlane: k.dp, Metric: g.Metric.Name, Unit: g.Metric.Unit,
				Better: string(g.Metric.Better), X: XValue(g.X), XUnit: g.XUnit, Summary: stats.Summarize(g.Values),
			})
		}
	}
	return out, errors.Join(errs...)
}

// WriteSummary rebuilds summary.json and summary.md in dir from dir/raw alone. What can be
// summarised is written even when some raw file is bad; the error names the bad files.
func WriteSummary(dir string) ([]Entry, error) {
	rows, rerr := ReadRaw(dir)
	entries, serr := Summarize(rows)
	if entries == nil {
		entries = []Entry{}
	}
	if m, err := ReadMeta(dir); err == nil {
		orderByRun(entries, m)
	}
	b, err := json.MarshalIndent(entries, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encode summary.json: %w", err)
	}
	if err := atomicfile.Write(filepath.Join(dir, "summary.json"), append(b, '\n'), 0o644); err != nil {
		return nil, err
	}
	md := MarkdownSummary(entries)
	if err := atomicfile.Write(filepath.Join(dir, "summary.md"), []byte(md), 0o644); err != nil {
		return nil, err
	}
	return entries, errors.Join(rerr, serr)
}

// orderByRun sorts entries by the order in which the run lists experiments; experiments it
// does not list keep their order after those it does.
func orderByRun(entries []Entry, m *Meta) {
	rank := func(exp string) int {
		i := slices.IndexFunc(m.Experiments, func(e ExperimentMeta) bool { return e.Name == exp })
		if i < 0 {
			return len(m.Experiments)
		}
		return i
	}
	slices.SortStableFunc(entries, func(a, b Entry) int { return rank(a.Experiment) - rank(b.Experiment) })
}

// ReadSummary reads dir/summary.json.
func ReadSummary(dir string) ([]Entry, error) {
	return readJSON[[]Entry](filepath.Join(dir, "summary.json"))
}

// experiments lists the experiments of entries in order of first appearance.
func experiments(entries []Entry) []string {
	var out []string
	for _, e := range entries {
		if !slices.Contains(out, e.Experiment) {
			out = append(out, e.Experiment)
		}
	}
	return out
}
