package reports

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/edgebpf/edgebpf/internal/atomicfile"
	"github.com/edgebpf/edgebpf/stats"
	"github.com/edgebpf/edgebpf/subject"
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
	// Censored is set on a drop point whose median is a lower bound: at least half the
	// repetitions found no drop up to the search's cap, Bound ("≥ Bound"). LimitedBy says
	// which side limited the search: "server" (a drop was found), "client" (the cap ran
	// clean and more clients no longer added load, or the client sent at a third of its
	// capacity or more) or "cap" (the cap ran clean, the load still grew: raise the cap). Results written before these fields
	// existed have none of them.
	Censored  bool    `json:"censored,omitempty"`
	Bound     float64 `json:"bound,omitempty"`
	LimitedBy string  `json:"limited_by,omitempty"`
}

// Which side limited a drop-point search (Entry.LimitedBy).
const (
	LimitedByServer = "server"
	LimitedByClient = "client"
	LimitedByCap    = "cap"
)

// annotateDropPoints marks the drop-point entries among one (experiment, data plane)'s
// entries as censored, with their bound and limiting side, from the drop_censored and
// client_limited entries beside them (their means are the shares of repetitions).
func annotateDropPoints(entries []Entry) {
	share := map[string]float64{}
	for _, e := range entries {
		if e.Metric == stats.DropCensored.Name || e.Metric == stats.ClientLimited.Name {
			share[e.Metric] = e.Mean
		}
	}
	c, ok := share[stats.DropCensored.Name]
	if !ok {
		return
	}
	for i := range entries {
		e := &entries[i]
		if e.Metric != stats.DropPoint.Name || e.N == 0 {
			continue
		}
		e.LimitedBy = LimitedByServer
		if c >= 0.5 {
			e.Censored, e.Bound = true, e.Max
			e.LimitedBy = LimitedByCap
			if share[stats.ClientLimited.Name] >= 0.5 {
				e.LimitedBy = LimitedByClient
			}
		}
	}
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
	byKey := map[key][]int{}
	for i, r := range rows {
		k := key{r.Experiment, r.DataPlane}
		if _, ok := byKey[k]; !ok {
			order = append(order, k)
		}
		byKey[k] = append(byKey[k], i)
	}
	var out []Entry
	var errs []error
	unknown := map[string]bool{}
	for _, k := range order {
		// One (experiment, data plane) at a time, so that only its samples are in memory.
		idx := byKey[k]
		samples := make([]stats.Sample, 0, len(idx))
		for _, i := range idx {
			r := &rows[i]
			m, ok := stats.Lookup(r.Metric)
			if !ok {
				if u := r.Experiment + "/" + r.DataPlane + "/" + r.Metric; !unknown[u] {
					unknown[u] = true
					errs = append(errs, fmt.Errorf("unknown metric %q in %s/%s", r.Metric, r.Experiment, r.DataPlane))
				}
				continue
			}
			samples = append(samples, stats.Sample{Rep: r.Rep, Seq: r.Seq, T: r.T, X: r.X, XUnit: r.XUnit, Metric: m, Value: r.Value})
		}
		groups, err := stats.GroupSamples(samples)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s/%s: %w", k.exp, k.dp, err))
			continue
		}
		first := len(out)
		for _, g := range groups {
			out = append(out, Entry{
				Experiment: k.exp, DataPlane: k.dp, Metric: g.Metric.Name, Unit: g.Metric.Unit,
				Better: string(g.Metric.Better), X: XValue(g.X), XUnit: g.XUnit, Summary: stats.Summarize(g.Values),
			})
		}
		annotateDropPoints(out[first:])
	}
	return out, errors.Join(errs...)
}

// WriteSummary rebuilds summary.json and summary.md in dir from dir/raw alone (and
// meta.json, when present, for the order of experiments). What can be summarised is written
// even when some raw file is bad; the error names the bad files and lines. subjects orders the
// tables' data planes.
func WriteSummary(dir string, subjects subject.Catalogue) ([]Entry, error) {
	ds, err := LoadDataset(dir, subjects)
	if werr := writeSummaries(ds, ThesisTables(ds)); werr != nil {
		return nil, werr
	}
	return ds.Entries, errors.Join(ds.Err, err)
}

// writeSummaries writes summary.json and summary.md of a dataset.
func writeSummaries(ds *Dataset, thesis []*Table) error {
	b, err := json.MarshalIndent(ds.Entries, "", "  ")
	if err != nil {
		return fmt.Errorf("encode summary.json: %w", err)
	}
	if err := atomicfile.Write(filepath.Join(ds.Dir, "summary.json"), append(b, '\n'), 0o644); err != nil {
		return err
	}
	md := markdownReport(thesis, ds.Entries) + notRunMarkdown(ds.Meta)
	return atomicfile.Write(filepath.Join(ds.Dir, "summary.md"), []byte(md), 0o644)
}

// notRunMarkdown lists the experiments a run skipped, with the reason; "" when none was.
func notRunMarkdown(m *Meta) string {
	if m == nil {
		return ""
	}
	var b strings.Builder
	for _, e := range m.Experiments {
		if e.Status == "skipped" && e.SkipReason != "" {
			if b.Len() == 0 {
				b.WriteString("\n# Not run on this machine\n\n| experiment | data plane | reason |\n| --- | --- | --- |\n")
			}
			fmt.Fprintf(&b, "| %s | %s | skipped: %s |\n", e.Name, e.DataPlane, strings.ReplaceAll(e.SkipReason, "|", "\\|"))
		}
	}
	return b.String()
}

// orderByRun sorts entries by the order in which the run lists experiments (m may be nil);
// experiments it does not list keep their order after those it does. Within an experiment,
// data planes follow the subjects' order.
func orderByRun(entries []Entry, m *Meta, subjects subject.Catalogue) {
	first := map[string]int{}
	for i, e := range entries {
		if _, ok := first[e.Experiment]; !ok {
			first[e.Experiment] = i
		}
	}
	listed := 0
	if m != nil {
		listed = len(m.Experiments)
	}
	rank := func(exp string) int {
		if m != nil {
			if i := slices.IndexFunc(m.Experiments, func(e ExperimentMeta) bool { return e.Name == exp }); i >= 0 {
				return i
			}
		}
		return listed + first[exp]
	}
	ranks := make(map[string]int, len(first))
	for exp := range first {
		ranks[exp] = rank(exp)
	}
	slices.SortStableFunc(entries, func(a, b Entry) int {
		if c := cmp.Compare(ranks[a.Experiment], ranks[b.Experiment]); c != 0 {
			return c
		}
		return subjects.Compare(a.DataPlane, b.DataPlane)
	})
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
