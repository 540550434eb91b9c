package reports

import (
	"cmp"
	"errors"
	"os"
	"slices"
	"strconv"

	"github.com/edgebpf/edgebpf/stats"
	"github.com/edgebpf/edgebpf/subject"
)

// Dataset is a results directory read into memory: its metadata, every raw row, the
// summaries computed from them, and an index from (experiment, data plane, metric) to rows.
// Tables, figures and the HTML page are built from a Dataset alone.
type Dataset struct {
	Dir     string
	Meta    *Meta   // nil when meta.json is missing or unreadable
	Rows    []Row   // every row of every readable raw file
	Entries []Entry // the summaries of Rows, ordered as the run lists its experiments
	// Err holds what went wrong reading or summarising raw data (naming files and lines);
	// the rows that could be read are still in Rows.
	Err error
	// Subjects orders and colours the data planes (and responder configurations) in
	// tables and figures; names it does not know come last, in a hash-picked colour.
	Subjects subject.Catalogue

	index   map[seriesKey][]int
	entries map[entryKey]int
}

type seriesKey struct{ exp, dp, metric string }

type entryKey struct {
	exp, dp, metric string
	x               XValue
}

// LoadDataset reads dir/meta.json (optional) and every raw file below dir/raw, and
// summarises them; subjects orders and colours what it finds (package subjects has them
// all). Problems with the raw data are in the Dataset's Err; an error is
// returned only when meta.json exists but cannot be parsed.
func LoadDataset(dir string, subjects subject.Catalogue) (*Dataset, error) {
	ds := &Dataset{Dir: dir, Subjects: subjects}
	m, merr := ReadMeta(dir)
	if merr == nil {
		ds.Meta = m
	}
	rows, rerr := ReadRaw(dir)
	entries, serr := Summarize(rows)
	if entries == nil {
		entries = []Entry{}
	}
	orderByRun(entries, ds.Meta, subjects)
	ds.Rows, ds.Entries, ds.Err = rows, entries, errors.Join(rerr, serr)
	ds.buildIndex()
	if merr != nil && !isMissing(merr) {
		return ds, merr
	}
	return ds, nil
}

// buildIndex indexes Rows and Entries.
func (ds *Dataset) buildIndex() {
	ds.index = make(map[seriesKey][]int)
	for i, r := range ds.Rows {
		k := seriesKey{r.Experiment, r.DataPlane, r.Metric}
		ds.index[k] = append(ds.index[k], i)
	}
	ds.entries = make(map[entryKey]int, len(ds.Entries))
	for i, e := range ds.Entries {
		ds.entries[entryKey{e.Experiment, e.DataPlane, e.Metric, e.X}] = i
	}
}

func isMissing(err error) bool { return errors.Is(err, os.ErrNotExist) }

// rows calls fn for every row of one metric of one experiment on one data plane, in file
// order.
func (ds *Dataset) rows(exp, dp, metric string, fn func(r *Row)) {
	for _, i := range ds.index[seriesKey{exp, dp, metric}] {
		fn(&ds.Rows[i])
	}
}

// values returns the finite values of a metric, at x when x is not "*".
func (ds *Dataset) values(exp, dp, metric, x string) []float64 {
	var out []float64
	ds.rows(exp, dp, metric, func(r *Row) {
		if (x == "*" || r.X == x) && finite(r.Value) {
			out = append(out, r.Value)
		}
	})
	return out
}

// has reports whether any data plane has finite values of metric in exp.
func (ds *Dataset) has(exp, metric string) bool {
	for _, dp := range ds.dataPlanes(exp) {
		if len(ds.values(exp, dp, metric, "*")) > 0 {
			return true
		}
	}
	return false
}

// entry returns the summary of one metric at x.
func (ds *Dataset) entry(exp, dp, metric, x string) (Entry, bool) {
	i, ok := ds.entries[entryKey{exp, dp, metric, XValue(x)}]
	if !ok {
		return Entry{}, false
	}
	return ds.Entries[i], true
}

// dataPlanes lists the data planes with rows in exp ("*": in any experiment), in the
// canonical order of DataPlaneOrder.
func (ds *Dataset) dataPlanes(exp string) []string {
	var out []string
	for k := range ds.index {
		if (exp == "*" || k.exp == exp) && !slices.Contains(out, k.dp) {
			out = append(out, k.dp)
		}
	}
	ds.Subjects.Sort(out)
	return out
}

// xs lists the distinct x values of a metric in exp across data planes, numerically
// ascending when every x is a number.
func (ds *Dataset) xs(exp, metric string) []string {
	seen := map[string]bool{}
	var out []string
	for k, idx := range ds.index {
		if k.exp != exp || k.metric != metric {
			continue
		}
		for _, i := range idx {
			if x := ds.Rows[i].X; x != "" && !seen[x] {
				seen[x] = true
				out = append(out, x)
			}
		}
	}
	sortXs(out)
	return out
}

func sortXs(xs []string) {
	nums := make(map[string]float64, len(xs))
	for _, x := range xs {
		f, err := strconv.ParseFloat(x, 64)
		if err != nil {
			slices.Sort(xs)
			return
		}
		nums[x] = f
	}
	slices.SortFunc(xs, func(a, b string) int { return cmp.Compare(nums[a], nums[b]) })
}

// lookupMetric returns the metric's definition, or one with its unit and no direction.
func lookupMetric(name, unit string) stats.Metric {
	if m, ok := stats.Lookup(name); ok {
		return m
	}
	return stats.Metric{Name: name, Unit: unit}
}
