package reports

import (
	"cmp"
	"errors"
	"hash/fnv"
	"image/color"
	"os"
	"slices"
	"strconv"

	"github.com/edgebpf/edgebpf/stats"
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

	index   map[seriesKey][]int
	entries map[entryKey]int
}

type seriesKey struct{ exp, dp, metric string }

type entryKey struct {
	exp, dp, metric string
	x               XValue
}

// LoadDataset reads dir/meta.json (optional) and every raw file below dir/raw, and
// summarises them. Problems with the raw data are in the Dataset's Err; an error is
// returned only when meta.json exists but cannot be parsed.
func LoadDataset(dir string) (*Dataset, error) {
	ds := &Dataset{Dir: dir}
	m, merr := ReadMeta(dir)
	if merr == nil {
		ds.Meta = m
	}
	rows, rerr := ReadRaw(dir)
	entries, serr := Summarize(rows)
	if entries == nil {
		entries = []Entry{}
	}
	orderByRun(entries, ds.Meta)
	ds.Rows, ds.Entries, ds.Err = rows, entries, errors.Join(rerr, serr)
	ds.index = make(map[seriesKey][]int)
	for i, r := range rows {
		k := seriesKey{r.Experiment, r.DataPlane, r.Metric}
		ds.index[k] = append(ds.index[k], i)
	}
	ds.entries = make(map[entryKey]int, len(entries))
	for i, e := range entries {
		ds.entries[entryKey{e.Experiment, e.DataPlane, e.Metric, e.X}] = i
	}
	if merr != nil && !isMissing(merr) {
		return ds, merr
	}
	return ds, nil
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
	sortDataPlanes(out)
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

// DataPlaneOrder is the order in which tables and figures list data planes: the physical
// limit first, then the thesis baselines and ours; data planes not listed follow by name.
var DataPlaneOrder = []string{"direct", "userspace", "mixed", "ebpf", "nftables"}

func sortDataPlanes(dps []string) {
	rank := func(dp string) int {
		if i := slices.Index(DataPlaneOrder, dp); i >= 0 {
			return i
		}
		return len(DataPlaneOrder)
	}
	slices.SortFunc(dps, func(a, b string) int {
		if c := cmp.Compare(rank(a), rank(b)); c != 0 {
			return c
		}
		return cmp.Compare(a, b)
	})
}

// palette gives each known data plane its colour in every figure: the thesis drew the
// user-space proxy blue and the eBPF proxy orange.
var palette = map[string]color.RGBA{
	"direct":    {0x4d, 0x4d, 0x4d, 0xff},
	"userspace": {0x1f, 0x77, 0xb4, 0xff},
	"ebpf":      {0xff, 0x7f, 0x0e, 0xff},
	"nftables":  {0x2c, 0xa0, 0x2c, 0xff},
	"mixed":     {0x94, 0x67, 0xbd, 0xff},
}

// fallback colours for data planes the palette does not name, picked by a hash of the
// name so that a data plane keeps its colour across figures and runs.
var fallback = []color.RGBA{
	{0xd6, 0x27, 0x28, 0xff}, {0x8c, 0x56, 0x4b, 0xff}, {0xe3, 0x77, 0xc2, 0xff},
	{0x17, 0xbe, 0xcf, 0xff}, {0xbc, 0xbd, 0x22, 0xff}, {0x39, 0x3b, 0x79, 0xff},
	{0x84, 0x3c, 0x39, 0xff}, {0x63, 0x79, 0x39, 0xff},
}

// Colour returns the colour of a data plane in every figure.
func Colour(dataplane string) color.RGBA {
	if c, ok := palette[dataplane]; ok {
		return c
	}
	h := fnv.New32a()
	h.Write([]byte(dataplane))
	return fallback[h.Sum32()%uint32(len(fallback))]
}

// lookupMetric returns the metric's definition, or one with its unit and no direction.
func lookupMetric(name, unit string) stats.Metric {
	if m, ok := stats.Lookup(name); ok {
		return m
	}
	return stats.Metric{Name: name, Unit: unit}
}
