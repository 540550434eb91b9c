package reports

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"

	"github.com/edgebpf/edgebpf/stats"
)

// Table is one table of the report, rendered alike to summary.md and index.html.
type Table struct {
	ID     string // HTML anchor
	Title  string
	Intro  string // what the table shows, above it
	Header []string
	Rows   [][]string
	Notes  []string // warnings and footnotes, below it
}

// Markdown renders the table as a Markdown section.
func (t *Table) Markdown() string {
	var b strings.Builder
	fmt.Fprintf(&b, "\n## %s\n\n", t.Title)
	if t.Intro != "" {
		b.WriteString(t.Intro + "\n\n")
	}
	esc := func(s string) string { return strings.ReplaceAll(s, "|", `\|`) }
	b.WriteString("|")
	for _, h := range t.Header {
		b.WriteString(" " + esc(h) + " |")
	}
	b.WriteString("\n|" + strings.Repeat("---|", len(t.Header)) + "\n")
	for _, r := range t.Rows {
		b.WriteString("|")
		for _, c := range r {
			b.WriteString(" " + esc(c) + " |")
		}
		b.WriteString("\n")
	}
	if len(t.Notes) > 0 {
		b.WriteString("\n- " + strings.Join(t.Notes, "\n- ") + "\n")
	}
	return b.String()
}

// ThesisTables builds the theses' tables from the dataset: Riegel's Table 5.1 with the
// highest loss-free rate of the bottleneck sweep, Weinhold's Tables 5.4 - 5.6 with the
// per-request times and the scaling fit, and the calibration against reference tools. A
// table whose experiments did not run is left out.
func ThesisTables(ds *Dataset) []*Table {
	var out []*Table
	for _, f := range []func(*Dataset) *Table{
		riegelTable, crossNodeRiegel, crossingCost, absoluteTable, lossFreeTable, crossNodeLossFree, weinhold54, weinhold55, weinhold56, perRequestTable, scalingFitTable, calibrationTable,
		scaleTable,
	} {
		if t := f(ds); t != nil {
			out = append(out, t)
		}
	}
	return out
}

// SummaryTables renders the summary of every experiment as one table each: median with
// its confidence interval, mean, p99 and the number of samples, in human units.
func SummaryTables(entries []Entry) []*Table {
	var out []*Table
	for _, exp := range experiments(entries) {
		t := &Table{ID: "summary-" + fileSafe(exp), Title: exp,
			Header: []string{"data plane", "metric", "x", "median", "95 % CI", "mean", "p99", "n"}}
		for _, e := range entries {
			if e.Experiment != exp {
				continue
			}
			mark := ""
			if len(e.Warnings) > 0 {
				mark = " ⚠"
				what := e.DataPlane + " " + e.Metric
				if e.X != "" {
					what += " " + FormatX(string(e.X), e.XUnit)
				}
				t.Notes = append(t.Notes, what+": "+strings.Join(e.Warnings, "; "))
			}
			t.Rows = append(t.Rows, []string{e.DataPlane, e.Metric, FormatX(string(e.X), e.XUnit),
				FormatValue(e.Median, e.Unit) + mark, FormatValue(e.CILo, e.Unit) + " – " + FormatValue(e.CIHi, e.Unit),
				FormatValue(e.Mean, e.Unit), FormatValue(e.P99, e.Unit), strconv.Itoa(e.N)})
		}
		out = append(out, t)
	}
	return out
}

// summaryIntro heads summary.md.
const summaryIntro = "# edgebpf summary\n\nMedians with their 95 % confidence interval (distribution-free, as benchstat computes it); n is the number of samples.\n"

// MarkdownSummary renders entries as one table per experiment: median with its confidence
// interval, mean, p99 and the number of samples, in human units. Warnings (too few samples
// for a finite interval) are marked and listed.
func MarkdownSummary(entries []Entry) string {
	return markdownReport(nil, entries)
}

// markdownReport is summary.md: the theses' tables first, then every experiment's summary.
func markdownReport(thesis []*Table, entries []Entry) string {
	var b strings.Builder
	b.WriteString(summaryIntro)
	if len(thesis) > 0 {
		b.WriteString("\n# The theses' tables with this run's numbers\n")
		for _, t := range thesis {
			b.WriteString(t.Markdown())
		}
		b.WriteString("\n# Every experiment\n")
	}
	for _, t := range SummaryTables(entries) {
		b.WriteString(t.Markdown())
	}
	return b.String()
}

// --- cells -----------------------------------------------------------------------------

// medianCell renders "4.140 ms [4.100, 4.200] n=450", marked ⚠ with a note when the
// summary carries warnings.
func medianCell(e Entry, what string, notes *[]string) string {
	if e.N == 0 {
		return "–"
	}
	sc := scaleFor(e.Unit, e.Median)
	s := fmt.Sprintf("%s [%s, %s] n=%d", sc.withUnit(e.Median), sc.format(e.CILo), sc.format(e.CIHi), e.N)
	if len(e.Warnings) > 0 {
		s += " ⚠"
		*notes = append(*notes, fmt.Sprintf("⚠ %s: %s; the interval shown is [min, max].", what, strings.Join(e.Warnings, "; ")))
	}
	return s
}

// summarise returns the summary of values as an Entry with the metric's unit.
func summarise(values []float64, unit string) Entry {
	return Entry{Unit: unit, Summary: stats.Summarize(values)}
}

// improvement is how much better b is than a, in percent of a: (a − b)/a for
// lower-is-better metrics, (b − a)/a otherwise, as the thesis computed it.
func improvement(a, b float64, better stats.Better) float64 {
	if better == stats.Higher {
		return (b - a) / math.Abs(a) * 100
	}
	return (a - b) / math.Abs(a) * 100
}

// speedup is how many times better b is than a: a/b for lower-is-better metrics, b/a
// otherwise.
func speedup(a, b float64, better stats.Better) float64 {
	if better == stats.Higher {
		return b / a
	}
	return a / b
}

func formatP(p float64) string {
	if p < 0.001 {
		return "p<0.001"
	}
	return "p=" + strconv.FormatFloat(p, 'f', 3, 64)
}

// versus renders the improvement of b over a with its significance, e.g. "+11.16 % (p=0.003)".
func versus(av, bv []float64, a, b Entry, better stats.Better, asFactor bool) string {
	if a.N == 0 || b.N == 0 || a.Median == 0 || (asFactor && b.Median == 0) {
		return "–"
	}
	var s string
	if asFactor {
		s = strconv.FormatFloat(speedup(a.Median, b.Median, better), 'f', 2, 64) + "×"
	} else {
		s = fmt.Sprintf("%+.2f %%", improvement(a.Median, b.Median, better))
	}
	if p, ok := mannWhitney(av, bv); ok {
		s += " (" + formatP(p) + ")"
	}
	return s
}

// --- Riegel ----------------------------------------------------------------------------

type riegelRow struct {
	label, exp, metric, x string
	// ours marks a row the thesis did not have: it is left out when its experiment did not
	// run.
	ours bool
}

// riegelRows are Table 5.1's measurements; the thesis's columns come from riegel51 (rows of
// ours have none).
var riegelRows = []riegelRow{
	{label: "Latency, idle regime (TCP connect RTT, SYN to SYN-ACK, paced: the thesis's hping3 -S)", exp: expLatency, metric: "rtt"},
	{label: "Round trip, busy regime (UDP request-response, 64 B back to back; p50)", exp: expLatencyRR, metric: "rtt:udp-rr-busy", ours: true},
	{label: "Round trip, busy regime (TCP request-response, 64 B back to back; p50)", exp: expLatencyRR, metric: "rtt:tcp-rr-busy", ours: true},
	{label: "Round trip, idle regime (UDP request-response, 64 B every 10 ms; p50)", exp: expLatencyRR, metric: "rtt:udp-rr-paced", ours: true},
	{label: "Round trip, idle regime (TCP request-response, 64 B every 10 ms; p50)", exp: expLatencyRR, metric: "rtt:tcp-rr-paced", ours: true},
	{label: "Jitter (RFC 3550, 1 Mbit/s UDP)", exp: expJitter, metric: "jitter"},
	{label: "Throughput (one TCP stream)", exp: expThroughput, metric: "throughput"},
	{label: "CPU usage (load phase)", exp: expResources, metric: "cpu", x: "load"},
}

func riegelTable(ds *Dataset) *Table {
	var dps []string
	found := false
	for _, r := range riegelRows {
		for _, dp := range ds.dataPlanes(r.exp) {
			if _, ok := ds.entry(r.exp, dp, r.metric, r.x); ok {
				found = true
				if !slices.Contains(dps, dp) {
					dps = append(dps, dp)
				}
			}
		}
	}
	if !found {
		return nil
	}
	ds.Subjects.Sort(dps)
	t := &Table{ID: "riegel-5-1", Title: "Riegel 2024, Table 5.1: summary of the evaluation",
		Intro: "This run's median per data plane with its 95 % confidence interval [lo, hi] and number of samples n, next to the thesis's figures (the thesis reported means, of the user-space proxy and the eBPF proxy only)."}
	t.Header = []string{"measurement"}
	t.Header = append(t.Header, dps...)
	t.Header = append(t.Header, "eBPF vs user space", "thesis: user space", "thesis: eBPF", "thesis: improvement")
	for _, r := range riegelRows {
		if r.ours && len(ds.dataPlanes(r.exp)) == 0 {
			continue
		}
		row := []string{r.label}
		for _, dp := range dps {
			e, ok := ds.entry(r.exp, dp, r.metric, r.x)
			if !ok {
				row = append(row, "not run")
				continue
			}
			row = append(row, medianCell(e, dp+" "+r.exp+" "+r.metric, &t.Notes))
		}
		u, uok := ds.entry(r.exp, "userspace", r.metric, r.x)
		e, eok := ds.entry(r.exp, "ebpf", r.metric, r.x)
		imp := "needs userspace and ebpf"
		if uok && eok {
			imp = versus(ds.values(r.exp, "userspace", r.metric, r.x), ds.values(r.exp, "ebpf", r.metric, r.x), u, e, stats.Better(e.Better), false)
		}
		row = append(append(row, imp), riegelCells(r.exp, r.metric, r.x)...)
		t.Rows = append(t.Rows, row)
	}
	t.Notes = append(t.Notes,
		"Improvement: how much better eBPF is than the user-space proxy, (user space − eBPF) / user space for latency, jitter and CPU and (eBPF − user space) / user space for throughput, on medians; p is the Mann–Whitney U test of the two samples (benchstat's method).",
		"CPU is the system-wide busy share of all cores in the load phase (100 Mbit/s TCP), including the load generator, as in the thesis.",
		"Two round-trip regimes: the busy rows time request-response round trips back to back on an established path (netperf TCP_RR, sockperf ping-pong), where caches and the CPUs stay warm; the idle rows, the thesis's regime, send one every 10 ms, so every packet also pays for waking the path up. The connect RTT times the handshake, the thesis's hping3 -S. p99s are in the latency-rr summary.")
	return t
}

// lossFreeTable derives, per data plane, the highest target rate of the bottleneck sweep
// at which no repetition lost a datagram, with the sender's achieved rate there.
func lossFreeTable(ds *Dataset) *Table {
	dps := ds.dataPlanes(expBottleneck)
	xs := ds.xs(expBottleneck, "loss")
	if len(dps) == 0 || len(xs) == 0 {
		return nil
	}
	t := &Table{ID: "bottleneck-loss-free", Title: "Bottleneck: highest loss-free rate",
		Intro:  "The largest target rate at which no repetition lost a datagram, with what the sender achieved and the receiver got there. Where the sender falls short of the target, the sender, not the data plane, was the limit.",
		Header: []string{"data plane", "highest loss-free target", "sender achieved there", "received there", "first target with loss", "thesis"}}
	for _, dp := range dps {
		best, firstLossy := "", ""
		for _, x := range xs {
			e, ok := ds.entry(expBottleneck, dp, "loss", x)
			if !ok || e.N == 0 {
				continue
			}
			if e.Max == 0 {
				best = x
			} else if firstLossy == "" {
				firstLossy = x
			}
		}
		if best == "" && firstLossy == "" {
			continue
		}
		row := []string{dp, "none: loss at every rate", "–", "–", "–", thesisBottleneck(dp)}
		if best != "" {
			row[1] = FormatX(best, "bit/s")
			if e, ok := ds.entry(expBottleneck, dp, "send_rate", best); ok && e.N > 0 {
				row[2] = FormatValue(e.Median, e.Unit)
			}
			if e, ok := ds.entry(expBottleneck, dp, "throughput", best); ok && e.N > 0 {
				row[3] = FormatValue(e.Median, e.Unit)
			}
		}
		if firstLossy != "" {
			e, _ := ds.entry(expBottleneck, dp, "loss", firstLossy)
			row[4] = fmt.Sprintf("%s (median loss %s)", FormatX(firstLossy, "bit/s"), FormatValue(e.Median, "percent"))
		} else {
			row[4] = "none up to " + FormatX(xs[len(xs)-1], "bit/s")
		}
		t.Rows = append(t.Rows, row)
	}
	if len(t.Rows) == 0 {
		return nil
	}
	return t
}

// --- Weinhold --------------------------------------------------------------------------

// weinholdConfigs lists the server configurations with samples of metric in exp.
func weinholdConfigs(ds *Dataset, exp, metric string) []string {
	var out []string
	for _, dp := range ds.dataPlanes(exp) {
		if len(ds.values(exp, dp, metric, "*")) > 0 {
			out = append(out, dp)
		}
	}
	return out
}

const configNote = "Configurations as in the thesis: userspace = user-space-only, mixed = XDP answers and user space computes the limit, ebpf = eBPF-only."

func weinhold54(ds *Dataset) *Table {
	m := stats.MeanRequestTime
	dps := weinholdConfigs(ds, expSLResponse, m.Name)
	if len(dps) == 0 {
		return nil
	}
	t := &Table{ID: "weinhold-5-4", Title: "Weinhold 2023, Table 5.4: time per request",
		Intro: "Each client's time for all its requests divided by their number (the thesis's measure, but wall-clock time where the thesis used process CPU time), every client of every repetition pooled; the thesis's table is one execution of 120 clients × 10,000 requests.",
		Header: []string{"configuration", "median [95 % CI] n", "min", "max", "stddev", "speed-up vs userspace",
			"thesis: median / min / max / stddev", "thesis: speed-up"}}
	base := ds.values(expSLResponse, "userspace", m.Name, "*")
	bs := summarise(base, m.Unit)
	for _, dp := range dps {
		v := ds.values(expSLResponse, dp, m.Name, "*")
		e := summarise(v, m.Unit)
		sc := scaleFor(m.Unit, e.Median)
		row := []string{dp, medianCell(e, dp+" time per request", &t.Notes), sc.withUnit(e.Min), sc.withUnit(e.Max), sc.withUnit(e.Stddev),
			speedupCell(dp, base, v, bs, e, m.Better)}
		t.Rows = append(t.Rows, append(row, thesisCells(thesis54, dp)...))
	}
	t.Notes = append(t.Notes, configNote, "Speed-up: userspace median / configuration median; p is the Mann–Whitney U test against userspace.")
	return t
}

func speedupCell(dp string, base, v []float64, bs, e Entry, better stats.Better) string {
	if dp == "userspace" {
		return "baseline"
	}
	if len(base) == 0 {
		return "needs userspace"
	}
	return versus(base, v, bs, e, better, true)
}

func weinhold55(ds *Dataset) *Table {
	m := stats.MeanRequestTime
	dps := weinholdConfigs(ds, expSLResponse, m.Name)
	if len(dps) == 0 {
		return nil
	}
	t := &Table{ID: "weinhold-5-5", Title: "Weinhold 2023, Table 5.5: median time per request over repetitions",
		Intro:  "The median over clients of the time per request in each repetition, summarised over repetitions (the thesis ran 96).",
		Header: []string{"configuration", "median [95 % CI] n", "mean", "stddev", "speed-up vs userspace", "thesis: median / mean / stddev", "thesis: speed-up"}}
	perRep := func(dp string) []float64 {
		byRep := map[int][]float64{}
		ds.rows(expSLResponse, dp, m.Name, func(r *Row) {
			if finite(r.Value) {
				byRep[r.Rep] = append(byRep[r.Rep], r.Value)
			}
		})
		var out []float64
		for _, rep := range sortedKeys(byRep) {
			vs := byRep[rep]
			slices.Sort(vs)
			out = append(out, median(vs))
		}
		return out
	}
	base := perRep("userspace")
	bs := summarise(base, m.Unit)
	for _, dp := range dps {
		v := perRep(dp)
		e := summarise(v, m.Unit)
		sc := scaleFor(m.Unit, e.Median)
		row := []string{dp, medianCell(e, dp+" median time per request", &t.Notes), sc.withUnit(e.Mean), sc.withUnit(e.Stddev),
			speedupCell(dp, base, v, bs, e, m.Better)}
		t.Rows = append(t.Rows, append(row, thesisCells(thesis55, dp)...))
	}
	t.Notes = append(t.Notes, configNote,
		"The thesis's speed-up column is computed from its table's medians; its text states 1.76× and 1.43×.")
	return t
}

func weinhold56(ds *Dataset) *Table {
	m := stats.DropPoint
	dps := weinholdConfigs(ds, expSLDropPoint, m.Name)
	if len(dps) == 0 {
		return nil
	}
	t := &Table{ID: "weinhold-5-6", Title: "Weinhold 2023, Table 5.6: clients until the first drop",
		Intro:  "Concurrent clients the server answered before the first request timed out, one value per repetition.",
		Header: []string{"configuration", "median [95 % CI] n", "mean", "min", "max", "factor vs userspace", "thesis: median / mean / min / max", "thesis: factor"}}
	base := ds.values(expSLDropPoint, "userspace", m.Name, "*")
	bs := summarise(base, m.Unit)
	baseEntry, _ := ds.entry(expSLDropPoint, "userspace", m.Name, "")
	censored := false
	for _, dp := range dps {
		v := ds.values(expSLDropPoint, dp, m.Name, "*")
		e := summarise(v, m.Unit)
		sc := scaleFor(m.Unit, e.Median)
		d, _ := ds.entry(expSLDropPoint, dp, m.Name, "")
		ge := "" // "≥ " on the cells a censored repetition bounds from below
		if d.Censored {
			ge, censored = "≥ ", true
		}
		median := ge + medianCell(e, dp+" clients until the first drop", &t.Notes)
		if d.LimitedBy != "" {
			median += " (" + d.LimitedBy + ")"
		}
		factor := speedupCell(dp, base, v, bs, e, m.Better)
		switch {
		case dp != "userspace" && baseEntry.Censored:
			factor = "– (userspace censored)"
		case dp != "userspace" && d.Censored && factor != "–":
			factor = ge + factor
		}
		row := []string{dp, median, ge + sc.format(e.Mean), sc.format(e.Min), ge + sc.format(e.Max), factor}
		t.Rows = append(t.Rows, append(row, thesisCells(thesis56, dp)...))
	}
	t.Notes = append(t.Notes, configNote, "Factor: configuration median / userspace median; the thesis's text compares means.")
	if note := dropSearchNote(ds); note != "" {
		t.Notes = append(t.Notes, note)
	}
	if censored {
		t.Notes = append(t.Notes, "≥: no drop up to the search's cap in at least half the repetitions, so the value is a lower bound (censored), not a measured drop point. "+
			"In brackets, which side limited the search: server (a drop was found), client (the cap ran clean and doubling the clients no longer raised the answered rate by a quarter, or the client sent at least a third of the datagrams per second it can send to a sink of its own: the server answered all the client could offer), cap (the load still grew: raise max).")
	}
	return t
}

// dropSearchNote says which search each configuration's drop point came from, as meta.json
// recorded its parameters; results from before the search was selectable ran the linear one.
func dropSearchNote(ds *Dataset) string {
	if ds.Meta == nil {
		return ""
	}
	searches := map[string][]string{}
	var order []string
	for _, e := range ds.Meta.Experiments {
		p, ok := e.Params.(map[string]any)
		if e.Name != expSLDropPoint || !ok {
			continue
		}
		search, _ := p["search"].(string)
		if search == "" {
			search = "linear"
		}
		if _, seen := searches[search]; !seen {
			order = append(order, search)
		}
		searches[search] = append(searches[search], e.DataPlane)
	}
	var parts []string
	for _, s := range order {
		what := "one step more per start, the thesis's"
		if s == "geometric" {
			what = "doubling the clients until a drop, then bisecting to one step and repeating the first-drop start"
		}
		parts = append(parts, fmt.Sprintf("%s (%s) for %s", s, what, strings.Join(searches[s], ", ")))
	}
	if len(parts) == 0 {
		return ""
	}
	return "Search: " + strings.Join(parts, "; ") + "."
}

func perRequestTable(ds *Dataset) *Table {
	m := stats.ResponseTime
	dps := weinholdConfigs(ds, expSLResponse, m.Name)
	if len(dps) == 0 {
		return nil
	}
	t := &Table{ID: "speedlimit-requests", Title: "Speed limit: wall-clock time of every request (ours)",
		Intro:  "Every request's time from send to reply, all clients and repetitions pooled. The thesis timed only whole clients, in process CPU time.",
		Header: []string{"configuration", "median [95 % CI] n", "p90", "p99", "max", "timeouts", "speed-up vs userspace"}}
	base := ds.values(expSLResponse, "userspace", m.Name, "*")
	bs := summarise(base, m.Unit)
	for _, dp := range dps {
		v := ds.values(expSLResponse, dp, m.Name, "*")
		e := summarise(v, m.Unit)
		sc := scaleFor(m.Unit, e.Median)
		timeouts := "–"
		if to := ds.values(expSLResponse, dp, stats.Timeouts.Name, "*"); len(to) > 0 {
			sum := 0.0
			for _, x := range to {
				sum += x
			}
			timeouts = strconv.FormatFloat(sum, 'f', -1, 64)
		}
		t.Rows = append(t.Rows, []string{dp, medianCell(e, dp+" time per request", &t.Notes), sc.withUnit(e.P90), sc.withUnit(e.P99), sc.withUnit(e.Max),
			timeouts, speedupCell(dp, base, v, bs, e, m.Better)})
	}
	return t
}

// scalingFit is the least-squares line through the median time per request at each
// number of clients of one configuration, in seconds.
type scalingFit struct {
	dp     string
	metric string
	fit    stats.Fit
	xmin   float64
	xmax   float64
}

func scalingFits(ds *Dataset) []scalingFit {
	metric := stats.ResponseTime.Name
	if !ds.has(expSLScaling, metric) {
		metric = stats.MeanRequestTime.Name
	}
	var out []scalingFit
	for _, dp := range ds.dataPlanes(expSLScaling) {
		var xs, ys []float64
		for _, pt := range curve(ds, expSLScaling, dp, metric) {
			if m := median(pt.sorted); finite(m) {
				xs = append(xs, pt.x)
				ys = append(ys, m)
			}
		}
		fit, err := stats.LinearFit(xs, ys)
		if err != nil {
			continue
		}
		out = append(out, scalingFit{dp, metric, fit, slices.Min(xs), slices.Max(xs)})
	}
	return out
}

func scalingFitTable(ds *Dataset) *Table {
	fits := scalingFits(ds)
	if len(fits) == 0 {
		return nil
	}
	t := &Table{ID: "speedlimit-scaling-fit", Title: "Speed limit: time per request vs clients, linear fit (Weinhold Fig. 5.6)",
		Intro:  "Least-squares line through the median time per request at each number of concurrent clients.",
		Header: []string{"configuration", "slope per client", "intercept", "R²", "points", "clients"}}
	for _, f := range fits {
		sl := scaleFor("s", f.fit.Slope)
		ic := scaleFor("s", f.fit.Intercept)
		t.Rows = append(t.Rows, []string{f.dp, sl.withUnit(f.fit.Slope), ic.withUnit(f.fit.Intercept),
			strconv.FormatFloat(f.fit.R2, 'f', 3, 64), strconv.Itoa(f.fit.N),
			fmt.Sprintf("%g – %g", f.xmin, f.xmax)})
	}
	if slices.ContainsFunc(fits, func(f scalingFit) bool { return float64(f.fit.N) < f.xmax-f.xmin+1 }) {
		t.Notes = append(t.Notes, "The client counts go in steps where the thesis added one client per start up to the first drop: a line is fitted as well through points spread over the range, "+
			"and as the XDP configurations do not drop up to 300 clients, one client per start would take ten times as long (the full profile: about 7 h instead of about 50 min on a 2-core machine).")
	}
	return t
}

// --- calibration -----------------------------------------------------------------------

// calGroup is one quantity of the calibration on one data plane: the reference tool's entry
// and edgebpf's, the meter as the experiments run it ("edgebpf") first, then its variants
// ("edgebpf-kernel": another method).
type calGroup struct {
	base string
	tool string
	ref  Entry
	ours []Entry
}

// calibrationGroups sorts the calibration's entries of dp by quantity: a metric
// "<quantity>:<source>" (the source after the last colon, so rtt:udp-rr-busy:sockperf is
// sockperf's rtt:udp-rr-busy), in the order the quantities first appear.
func calibrationGroups(ds *Dataset, dp string) []*calGroup {
	byBase := map[string]*calGroup{}
	var out []*calGroup
	for _, e := range ds.Entries {
		if e.Experiment != expCalibration || e.DataPlane != dp || e.X != "" {
			continue
		}
		i := strings.LastIndexByte(e.Metric, ':')
		if i < 0 {
			continue
		}
		base, src := e.Metric[:i], e.Metric[i+1:]
		g := byBase[base]
		if g == nil {
			g = &calGroup{base: base}
			byBase[base] = g
			out = append(out, g)
		}
		if src == "edgebpf" || strings.HasPrefix(src, "edgebpf-") {
			g.ours = append(g.ours, e)
		} else {
			g.ref, g.tool = e, src
		}
	}
	for _, g := range out {
		slices.SortStableFunc(g.ours, func(a, b Entry) int { return strings.Compare(a.Metric, b.Metric) })
	}
	return out
}

// calTarget is what issue 11 asks of a meter against its reference tool on the quick
// profile; the mark says whether this run met it.
type calTarget struct {
	text string
	met  bool
}

// calibrationTarget returns the target of our entry ours of quantity base on dp, or false
// where there is none: throughput at least 0.9x iperf3's; jitter within 1.3x of iperf3's
// with a 95 % interval no wider than 2x its median; busy request-response round trips
// within 1.2x of sockperf's on direct and, on the other data planes, a ratio to direct
// within 15 % of sockperf's (vs is that ratio of ratios, NaN without direct).
func calibrationTarget(base, dp string, ours Entry, ratio, vs float64) (calTarget, bool) {
	if strings.Contains(ours.Metric, ":edgebpf-") || math.IsNaN(ratio) {
		return calTarget{}, false
	}
	switch {
	case base == "throughput":
		return calTarget{"≥ 0.9x", ratio >= 0.9}, true
	case base == "jitter":
		width := ours.CIHi - ours.CILo
		return calTarget{"1/1.3 – 1.3x, CI ≤ 2x median", ratio >= 1/1.3 && ratio <= 1.3 && width <= 2*ours.Median}, true
	case strings.HasSuffix(base, "-rr-busy") && dp == "direct":
		return calTarget{"1/1.2 – 1.2x", ratio >= 1/1.2 && ratio <= 1.2}, true
	case strings.HasSuffix(base, "-rr-busy") && !math.IsNaN(vs):
		return calTarget{"vs direct within 15 %", vs >= 0.85 && vs <= 1.15}, true
	}
	return calTarget{}, false
}

func calibrationTable(ds *Dataset) *Table {
	t := &Table{ID: "calibration", Title: "Calibration: edgebpf's meters against reference tools",
		Intro: "The same path measured by the reference tool and by edgebpf's meter, interleaved; a ratio near 1 shows the meter is not the limit. " +
			"rtt:<udp|tcp>-rr-<busy|paced> are request-response round trips of 64 B (edgebpf's request-response meter against sockperf ping-pong --full-rtt), busy back to back or paced; " +
			"rtt:tcp-rr-paced (connect) is the connect meter (SYN to SYN-ACK, the thesis's latency) next to sockperf's paced TCP round trip. " +
			"vs direct is (edgebpf on this data plane / on direct) / (tool on this data plane / on direct): whether the meter ranks data planes as the tool does. " +
			"jitter (kernel) is edgebpf's jitter meter with the kernel's receive timestamps instead of user-space ones (not comparable across data planes: the stamp's place depends on the path). " +
			"The targets are issue 11's, on the quick profile.",
		Header: []string{"data plane", "quantity", "tool", "tool: median [95 % CI] n", "edgebpf: median [95 % CI] n", "edgebpf / tool", "vs direct", "target", "met"}}
	met, total := 0, 0
	for _, dp := range ds.dataPlanes(expCalibration) {
		for _, g := range calibrationGroups(ds, dp) {
			for _, ours := range g.ours {
				if ours.N == 0 || g.ref.N == 0 {
					continue
				}
				row, tg, ok := calibrationRow(ds, dp, g, ours, &t.Notes)
				if ok {
					total++
					if tg.met {
						met++
					}
				}
				t.Rows = append(t.Rows, row)
			}
		}
	}
	if len(t.Rows) == 0 {
		return nil
	}
	t.Notes = append(t.Notes, fmt.Sprintf("Targets met: %d of %d.", met, total))
	return t
}

// calibrationRow renders one of our entries against its tool's, with its target if it has
// one (ok).
func calibrationRow(ds *Dataset, dp string, g *calGroup, ours Entry, notes *[]string) (row []string, tg calTarget, ok bool) {
	ratio := math.NaN()
	if g.ref.Median != 0 {
		ratio = ours.Median / g.ref.Median
	}
	vs := math.NaN()
	if dp != "direct" {
		od, ook := ds.entry(expCalibration, "direct", ours.Metric, "")
		td, tok := ds.entry(expCalibration, "direct", g.ref.Metric, "")
		if ook && tok && od.Median != 0 && td.Median != 0 && g.ref.Median != 0 {
			vs = (ours.Median / od.Median) / (g.ref.Median / td.Median)
		}
	}
	quantity := g.base
	if _, variant, found := strings.Cut(ours.Metric, ":edgebpf-"); found {
		quantity += " (" + variant + ")"
	}
	f := func(v float64) string {
		if math.IsNaN(v) {
			return "–"
		}
		return strconv.FormatFloat(v, 'f', 3, 64)
	}
	tg, ok = calibrationTarget(g.base, dp, ours, ratio, vs)
	text, mark := "–", "–"
	if ok {
		text, mark = tg.text, "✗"
		if tg.met {
			mark = "✓"
		}
	}
	return []string{dp, quantity, g.tool, medianCell(g.ref, dp+" "+g.base+" "+g.tool, notes),
		medianCell(ours, dp+" "+ours.Metric, notes), f(ratio), f(vs), text, mark}, tg, ok
}
