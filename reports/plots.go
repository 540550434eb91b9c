package reports

import (
	"cmp"
	"fmt"
	"image/color"
	"math"
	"runtime"
	"slices"
	"strconv"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"

	"github.com/edgebpf/edgebpf/internal/parallel"
	"github.com/edgebpf/edgebpf/stats"
)

// Figure is one rendered figure of a report: PNG and SVG of the same plot.
type Figure struct {
	Name    string // file stem under plots/, e.g. "latency-cdf"
	Title   string
	Source  string // the thesis figure it reproduces, or "ours"
	Caption string // what is drawn, in a sentence or two
	PNG     []byte
	SVG     []byte
}

// SkippedFigure is a figure of the report that this run has no data for.
type SkippedFigure struct {
	Name, Title, Reason string
}

// figureSpec is a figure before rendering: a plot, or the reason there is none.
type figureSpec struct {
	name, title, source, caption string
	p                            *plot.Plot
	skip                         string
	// categories are the series drawn, in order (a box figure's boxes at x = 0, 1, ...);
	// xScale and yScale the scales of the axes, for what is added to the plot later
	// (the theses' values).
	categories     []string
	xScale, yScale scale
}

func skipped(name, title, source, reason string) figureSpec {
	return figureSpec{name: name, title: title, source: source, skip: reason}
}

// figureBuilders lists every figure of the report in the order the page shows them.
var figureBuilders = []func(*Dataset) []figureSpec{
	latencyCDF, jitterBox, jitterCDF, throughputBox, throughputTime,
	bottleneckOWD, bottleneckLoss, bottleneckRates, bottleneckCPUPerPacket,
	cpuPerDataPlane, cpuCompare, ramTime, cpuPerGbit, bpfCost,
	speedlimitCurve, speedlimitResponseBox, speedlimitClients, speedlimitDropPoint, speedlimitScaling, speedlimitLoad,
	scaleFigures,
}

// Figures builds and renders every figure the dataset has data for, and lists those it
// skips with the reason. Rendering errors are returned joined; the other figures are
// still rendered.
func Figures(ds *Dataset) ([]Figure, []SkippedFigure, error) {
	var specs []figureSpec
	var skips []SkippedFigure
	var all []figureSpec
	for _, b := range figureBuilders {
		all = append(all, b(ds)...)
	}
	for _, s := range append(all, crossNodeFigures(ds)...) {
		if s.p == nil {
			skips = append(skips, SkippedFigure{Name: s.name, Title: s.title, Reason: s.skip})
			continue
		}
		specs = append(specs, s)
	}
	footer := figureFooter(ds.Meta)
	// Rendering dominates; figures are independent, so they render in parallel.
	figs := make([]Figure, len(specs))
	ok := make([]bool, len(specs))
	err := parallel.Do(len(specs), runtime.GOMAXPROCS(0), func(i int) error {
		s := specs[i]
		pngData, svgData, err := render(s.p, footer)
		if err != nil {
			return fmt.Errorf("figure %s: %w", s.name, err)
		}
		figs[i] = Figure{Name: s.name, Title: s.title, Source: s.source, Caption: s.caption, PNG: pngData, SVG: svgData}
		ok[i] = true
		return nil
	})
	out := figs[:0]
	for i, f := range figs {
		if ok[i] {
			out = append(out, f)
		}
	}
	return out, skips, err
}

// labelSep separates a category's name from its count: a line break where more than four
// categories share the axis, so that long names (ebpf+userspace) do not run into each other.
func labelSep(categories int) string {
	if categories > 4 {
		return "\n"
	}
	return " "
}

// --- distributions ---------------------------------------------------------------------

// cdfFigure draws the empirical CDF of a metric per data plane.
func cdfFigure(ds *Dataset, name, title, source, exp, metric, quantity string) figureSpec {
	type series struct {
		dp     string
		sorted []float64
	}
	var ss []series
	var all [][]float64
	for _, dp := range ds.dataPlanes(exp) {
		v := sortedFinite(ds.values(exp, dp, metric, "*"))
		if len(v) == 0 {
			continue
		}
		ss = append(ss, series{dp, v})
		all = append(all, v)
	}
	if len(ss) == 0 {
		return skipped(name, title, source, fmt.Sprintf("no %s samples of the %s experiment in this run", metric, exp))
	}
	sc := scaleFor(lookupMetric(metric, "").Unit, p99Of(all))
	p := newPlot(title, axisLabel(quantity, sc), "fraction of samples ≤ x")
	p.Legend.Left, p.Legend.Top = false, false
	p.Legend.YOffs = vg.Points(10)
	p.Y.Min, p.Y.Max = 0, 1.02
	lo, hi, mid := math.Inf(1), math.Inf(-1), math.Inf(1)
	for _, s := range ss {
		lo, hi, mid = math.Min(lo, s.sorted[0]), math.Max(hi, s.sorted[len(s.sorted)-1]), math.Min(mid, median(s.sorted))
	}
	logX := lo > 0 && hi > 10*mid
	if logX {
		// A tail ten times the median would squeeze the body of the distribution into a
		// corner of a linear axis.
		p.X.Scale = plot.LogScale{}
		p.X.Tick.Marker = niceTicks{}
		p.X.Min, p.X.Max = sc.of(lo)/1.1, sc.of(hi)*1.1
	}
	var cats []string
	for i, s := range ss {
		n := len(s.sorted)
		k := min(n, maxPoints)
		pts := make(plotter.XYs, 0, k+1)
		pts = append(pts, plotter.XY{X: sc.of(s.sorted[0]), Y: 0})
		for i := range k {
			j := i
			if k < n {
				j = int(math.Round(float64(i) * float64(n-1) / float64(k-1)))
			}
			pts = append(pts, plotter.XY{X: sc.of(s.sorted[j]), Y: float64(j+1) / float64(n)})
		}
		l, err := plotter.NewLine(pts)
		if err != nil {
			continue
		}
		l.LineStyle = lineStyle(ds.Subjects.Colour(s.dp), 1.6)
		l.LineStyle.Dashes = seriesDashes(i)
		l.StepStyle = plotter.PostStep
		cats = append(cats, s.dp)
		p.Add(l)
		p.Legend.Add(fmt.Sprintf("%s (n=%d)", s.dp, n), l)
	}
	caption := fmt.Sprintf("Empirical CDF of every %s sample per data plane, all repetitions pooled.", quantity)
	if logX {
		caption += " Logarithmic x axis: the tail reaches more than ten times the median."
	}
	return figureSpec{name: name, title: title, source: source, p: p, caption: caption, categories: cats, xScale: sc}
}

// p99Of is the 99th percentile of the pooled sorted slices: a scale reference that a few
// outliers do not set.
func p99Of(sorted [][]float64) float64 {
	m := 0.0
	for _, s := range sorted {
		if len(s) > 0 {
			m = math.Max(m, math.Abs(quantile(s, 0.99)))
		}
	}
	return m
}

// boxFigure draws one box per data plane (Tukey's schematic: quartiles, whiskers to the
// last value within 1.5 IQR, points beyond).
func boxFigure(ds *Dataset, name, title, source, quantity, unit, caption string, dps []string, values map[string][]float64, emptyReason string) figureSpec {
	var names []string
	var sorted [][]float64
	for _, dp := range dps {
		v := sortedFinite(values[dp])
		if len(v) == 0 {
			continue
		}
		names = append(names, dp)
		sorted = append(sorted, v)
	}
	if len(names) == 0 {
		return skipped(name, title, source, emptyReason)
	}
	sc := scaleFor(unit, maxAbs(sorted...))
	p := newPlot(title, "", axisLabel(quantity, sc))
	labels := make([]string, len(names))
	for i, dp := range names {
		vals := sketch(sorted[i], maxPoints)
		scaled := make(plotter.Values, len(vals))
		for j, v := range vals {
			scaled[j] = sc.of(v)
		}
		b, err := plotter.NewBoxPlot(vg.Points(46), float64(i), scaled)
		if err != nil {
			continue
		}
		b.FillColor = withAlpha(ds.Subjects.Colour(dp), 0.45)
		b.BoxStyle = lineStyle(ds.Subjects.Colour(dp), 1.2)
		b.MedianStyle = lineStyle(color.Black, 2)
		b.GlyphStyle.Color = ds.Subjects.Colour(dp)
		b.GlyphStyle.Radius = vg.Points(1.5)
		p.Add(b)
		labels[i] = fmt.Sprintf("%s%s(n=%d)", dp, labelSep(len(names)), len(sorted[i]))
	}
	p.NominalX(labels...)
	p.X.Min, p.X.Max = -0.6, float64(len(names))-0.4
	return figureSpec{name: name, title: title, source: source, p: p, caption: caption, categories: names, yScale: sc}
}

func latencyCDF(ds *Dataset) []figureSpec {
	f := cdfFigure(ds, "latency-cdf", "Latency: TCP connect round-trip time", "Riegel Fig. 4.1",
		expLatency, "rtt", "round-trip time")
	f.caption += thesisMeansNote
	return []figureSpec{markThesisCDF(ds, f, expLatency, "rtt")}
}

// thesisMeansNote ends the caption of a figure with Riegel's means on it.
const thesisMeansNote = " Dotted lines: the thesis's means (Table 5.1) of the user-space and the eBPF proxy, the only two it measured; its absolute values come from another machine and stack, compare ratios (see “Why absolute numbers differ”)."

func jitterCDF(ds *Dataset) []figureSpec {
	f := cdfFigure(ds, "jitter-cdf", "Jitter: CDF of the RFC 3550 jitter per run", "Riegel Fig. 4.2b",
		expJitter, "jitter", "jitter")
	f.caption = strings.Replace(f.caption, "Empirical CDF of every jitter sample per data plane, all repetitions pooled.",
		"Empirical CDF of the final RFC 3550 interarrival jitter of each 1 Mbit/s UDP run (one value per repetition), per data plane.", 1)
	f.caption += thesisMeansNote
	return []figureSpec{markThesisCDF(ds, f, expJitter, "jitter")}
}

// valuesPerDataPlane returns the data planes of an experiment and each one's values of a
// metric, every x pooled: what a box figure per data plane draws.
func valuesPerDataPlane(ds *Dataset, exp, metric string) ([]string, map[string][]float64) {
	dps := ds.dataPlanes(exp)
	vals := make(map[string][]float64, len(dps))
	for _, dp := range dps {
		vals[dp] = ds.values(exp, dp, metric, "*")
	}
	return dps, vals
}

func jitterBox(ds *Dataset) []figureSpec {
	dps, vals := valuesPerDataPlane(ds, expJitter, "jitter")
	f := boxFigure(ds, "jitter-box", "Jitter per run", "Riegel Fig. 4.2a", "jitter", "s",
		"The final RFC 3550 interarrival jitter of each 1 Mbit/s UDP run, one value per repetition; boxes are quartiles, whiskers reach the last value within 1.5 IQR. Open squares: the thesis's means (Table 5.1).",
		dps, vals, "no jitter samples of the jitter experiment in this run")
	return []figureSpec{markThesisBoxes(ds, f, riegelMean(expJitter, "jitter", ""), "mean")}
}

func throughputBox(ds *Dataset) []figureSpec {
	dps := ds.dataPlanes(expThroughput)
	vals := map[string][]float64{}
	for _, dp := range dps {
		byRep := map[int][]float64{}
		ds.rows(expThroughput, dp, "throughput", func(r *Row) {
			if finite(r.Value) {
				byRep[r.Rep] = append(byRep[r.Rep], r.Value)
			}
		})
		for _, rep := range sortedKeys(byRep) {
			vals[dp] = append(vals[dp], mean(byRep[rep]))
		}
	}
	f := boxFigure(ds, "throughput-box", "Throughput per run", "Riegel Fig. 4.3a", "throughput", "bit/s",
		"The mean of each run's per-interval TCP throughput (payload bits/s at the receiver), one value per repetition. Open squares: the thesis's means (Table 5.1); the grey dotted line: the 34.2 Gbit/s hardware limit the thesis's figure marks, the counterpart of our direct.",
		dps, vals, "no throughput samples of the throughput experiment in this run")
	if f.p != nil {
		thesisLine(f.p, f.p.X.Min, f.yScale.of(riegelLinkLimit), f.p.X.Max, f.yScale.of(riegelLinkLimit), color.Gray{0x55},
			"thesis: "+f.yScale.withUnit(riegelLinkLimit)+" hardware limit (cf. direct)")
	}
	return []figureSpec{markThesisBoxes(ds, f, riegelMean(expThroughput, "throughput", ""), "mean")}
}

func mean(v []float64) float64 {
	s := 0.0
	for _, x := range v {
		s += x
	}
	return s / float64(len(v))
}

func sortedKeys[V any](m map[int]V) []int {
	out := make([]int, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// --- time series -----------------------------------------------------------------------

// timeSeries is one metric of one data plane over the time of a repetition: the median of
// the repetitions at each interval (Seq), and every repetition's own line.
type timeSeries struct {
	t, v []float64      // per Seq: median time and median value over the repetitions
	reps [][2][]float64 // per repetition: times and values
	allT []float64
	allV []float64
}

type phaseSpan struct {
	name       string
	start, end float64
}

func collectTimeSeries(ds *Dataset, exp, dp, metric string) timeSeries {
	type pt struct{ t, v float64 }
	bySeq := map[int][]pt{}
	byRep := map[int][]pt{}
	var ts timeSeries
	ds.rows(exp, dp, metric, func(r *Row) {
		if !finite(r.Value) || !finite(r.T) {
			return
		}
		bySeq[r.Seq] = append(bySeq[r.Seq], pt{r.T, r.Value})
		byRep[r.Rep] = append(byRep[r.Rep], pt{r.T, r.Value})
		ts.allT = append(ts.allT, r.T)
		ts.allV = append(ts.allV, r.Value)
	})
	for _, seq := range sortedKeys(bySeq) {
		pts := bySeq[seq]
		tsv := make([]float64, len(pts))
		vs := make([]float64, len(pts))
		for i, p := range pts {
			tsv[i], vs[i] = p.t, p.v
		}
		slices.Sort(tsv)
		slices.Sort(vs)
		ts.t = append(ts.t, median(tsv))
		ts.v = append(ts.v, median(vs))
	}
	// Intervals are numbered per repetition; sort by time in case Seq restarts.
	idx := make([]int, len(ts.t))
	for i := range idx {
		idx[i] = i
	}
	slices.SortStableFunc(idx, func(a, b int) int { return cmp.Compare(ts.t[a], ts.t[b]) })
	t2, v2 := make([]float64, len(idx)), make([]float64, len(idx))
	for i, j := range idx {
		t2[i], v2[i] = ts.t[j], ts.v[j]
	}
	ts.t, ts.v = t2, v2
	for _, rep := range sortedKeys(byRep) {
		pts := byRep[rep]
		slices.SortStableFunc(pts, func(a, b pt) int { return cmp.Compare(a.t, b.t) })
		var line [2][]float64
		for _, p := range pts {
			line[0] = append(line[0], p.t)
			line[1] = append(line[1], p.v)
		}
		ts.reps = append(ts.reps, line)
	}
	return ts
}

// phases finds the Idle/Load/Cleanup spans of the resources experiment over the given data
// planes. A sample's t is the end of its interval, and a phase change ends an interval
// (bench.Sysmon.SetPhase), so a phase begins where the one before it ended: at the median
// over repetitions of that phase's last sample. The first phase begins at the start of the
// run, the last ends at its latest sample.
func phases(ds *Dataset, dps []string) []phaseSpan {
	type acc struct {
		firsts, lasts []float64
		end           float64
	}
	byPhase := map[string]*acc{}
	for _, dp := range dps {
		type bounds struct{ first, last float64 }
		per := map[string]map[int]*bounds{}
		ds.rows(expResources, dp, "cpu", func(r *Row) {
			if r.XUnit != "phase" || r.X == "" || !finite(r.T) {
				return
			}
			if per[r.X] == nil {
				per[r.X] = map[int]*bounds{}
			}
			if b := per[r.X][r.Rep]; b == nil {
				per[r.X][r.Rep] = &bounds{r.T, r.T}
			} else {
				b.first, b.last = math.Min(b.first, r.T), math.Max(b.last, r.T)
			}
			a := byPhase[r.X]
			if a == nil {
				a = &acc{end: r.T}
				byPhase[r.X] = a
			}
			a.end = math.Max(a.end, r.T)
		})
		for ph, reps := range per {
			for _, b := range reps {
				byPhase[ph].firsts = append(byPhase[ph].firsts, b.first)
				byPhase[ph].lasts = append(byPhase[ph].lasts, b.last)
			}
		}
	}
	var out []phaseSpan
	lasts := map[string]float64{}
	for name, a := range byPhase {
		slices.Sort(a.firsts)
		slices.Sort(a.lasts)
		lasts[name] = median(a.lasts)
		out = append(out, phaseSpan{name: name, start: median(a.firsts), end: a.end})
	}
	slices.SortFunc(out, func(a, b phaseSpan) int { return cmp.Compare(a.start, b.start) })
	for i := range out {
		switch {
		case i == 0:
			out[i].start = 0
		default:
			out[i].start = lasts[out[i-1].name]
			out[i-1].end = out[i].start
		}
	}
	return out
}

var phaseColours = map[string]color.RGBA{
	"idle":    {0x2c, 0xa0, 0x2c, 0xff},
	"load":    {0xd6, 0x27, 0x28, 0xff},
	"cleanup": {0x1f, 0x77, 0xb4, 0xff},
}

// shadePhases adds one translucent band per phase from y 0 to ymax, with a legend entry.
func shadePhases(p *plot.Plot, spans []phaseSpan, ymin, ymax float64) {
	for _, s := range spans {
		if !finite(s.start) || !finite(s.end) || s.end <= s.start {
			continue
		}
		c, ok := phaseColours[s.name]
		if !ok {
			c = color.RGBA{0x99, 0x99, 0x99, 0xff}
		}
		poly, err := plotter.NewPolygon(plotter.XYs{{X: s.start, Y: ymin}, {X: s.end, Y: ymin}, {X: s.end, Y: ymax}, {X: s.start, Y: ymax}})
		if err != nil {
			continue
		}
		poly.Color = withAlpha(c, 0.13)
		poly.LineStyle.Width = 0
		p.Add(poly)
		p.Legend.Add(phaseTitle(s.name), poly)
	}
}

func phaseTitle(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

func throughputTime(ds *Dataset) []figureSpec {
	const name, title, source = "throughput-time", "Throughput over time", "Riegel Fig. 4.3b"
	dps := ds.dataPlanes(expThroughput)
	var series []timeSeries
	var names []string
	for _, dp := range dps {
		ts := collectTimeSeries(ds, expThroughput, dp, "throughput")
		if len(ts.t) == 0 {
			continue
		}
		series = append(series, ts)
		names = append(names, dp)
	}
	if len(series) == 0 {
		return []figureSpec{skipped(name, title, source, "no throughput samples of the throughput experiment in this run")}
	}
	var all [][]float64
	for _, s := range series {
		all = append(all, s.allV)
	}
	sc := scaleFor("bit/s", maxAbs(all...))
	p := newPlot(title, "time since the start of the run (s)", axisLabel("throughput", sc))
	p.Y.Min = 0
	p.Y.Max = sc.of(maxAbs(all...)) * 1.3
	for i, s := range series {
		c := ds.Subjects.Colour(names[i])
		for _, r := range s.reps {
			ys := make([]float64, len(r[1]))
			for j, v := range r[1] {
				ys[j] = sc.of(v)
			}
			if l, err := plotter.NewLine(xyLine(r[0], ys)); err == nil {
				l.LineStyle = lineStyle(withAlpha(c, 0.18), 0.7)
				p.Add(l)
			}
		}
	}
	for i, s := range series {
		ys := make([]float64, len(s.v))
		for j, v := range s.v {
			ys[j] = sc.of(v)
		}
		l, pts, err := plotter.NewLinePoints(xyLine(s.t, ys))
		if err != nil {
			continue
		}
		l.LineStyle = lineStyle(ds.Subjects.Colour(names[i]), 2)
		pts.Color = ds.Subjects.Colour(names[i])
		pts.Shape = draw.CircleGlyph{}
		pts.Radius = vg.Points(2)
		p.Add(l, pts)
		p.Legend.Add(fmt.Sprintf("%s: median of %s", names[i], plural(len(s.reps), "run")), l, pts)
	}
	t0, t1 := math.Inf(1), math.Inf(-1)
	for _, s := range series {
		t0, t1 = math.Min(t0, s.t[0]), math.Max(t1, s.t[len(s.t)-1])
	}
	th, _ := riegelFor(expThroughput, "throughput", "")
	for _, dp := range names {
		if v, ok := th.mean(dp); ok {
			thesisLine(p, t0, sc.of(v), t1, sc.of(v), ds.Subjects.Colour(dp), thesisLabel(dp, th.sc.withUnit(v), "mean"))
		}
	}
	thesisLine(p, t0, sc.of(riegelLinkLimit), t1, sc.of(riegelLinkLimit), color.Gray{0x55}, "thesis: "+sc.withUnit(riegelLinkLimit)+" hardware limit (cf. direct)")
	p.Y.Max = math.Max(p.Y.Max, sc.of(riegelLinkLimit)*1.05)
	return []figureSpec{{name: name, title: title, source: source, p: p,
		caption: "Payload bits/s at the receiver per interval: the thick line is the median over the repetitions at each interval, thin lines are the individual runs. Dotted: the thesis's means (Table 5.1) and the 34.2 Gbit/s hardware limit its figure marks (grey), the counterpart of our direct."}}
}

// --- bottleneck ------------------------------------------------------------------------

// curvePoint is one x of a curve: the target rate in bit/s and the values there.
type curvePoint struct {
	x      float64
	sorted []float64
}

// curve returns the finite values of a metric of exp on dp per numeric x, ascending.
func curve(ds *Dataset, exp, dp, metric string) []curvePoint {
	byX := map[string][]float64{}
	ds.rows(exp, dp, metric, func(r *Row) {
		if finite(r.Value) && r.X != "" {
			byX[r.X] = append(byX[r.X], r.Value)
		}
	})
	var out []curvePoint
	for x, vs := range byX {
		f, err := strconv.ParseFloat(x, 64)
		if err != nil || !finite(f) {
			continue
		}
		slices.Sort(vs)
		out = append(out, curvePoint{f, vs})
	}
	slices.SortFunc(out, func(a, b curvePoint) int { return cmp.Compare(a.x, b.x) })
	return out
}

// rateAxis sets up a target-rate x axis: logarithmic with 1-2-5 labels when every rate is
// positive.
func rateAxis(p *plot.Plot, curves ...[]curvePoint) scale {
	xmax, xmin := 0.0, math.Inf(1)
	for _, c := range curves {
		for _, pt := range c {
			xmax = math.Max(xmax, pt.x)
			xmin = math.Min(xmin, pt.x)
		}
	}
	ref := xmax
	if xmin > 0 {
		ref = math.Sqrt(xmin * xmax) // 1 Mbit/s to 2 Gbit/s reads best in Mbit/s
	}
	sc := scaleFor("bit/s", ref)
	p.X.Label.Text = axisLabel("target rate", sc)
	if xmin > 0 && xmax > xmin {
		p.X.Scale = plot.LogScale{}
		p.X.Tick.Marker = niceTicks{}
		p.X.Min, p.X.Max = sc.of(xmin)/1.25, sc.of(xmax)*1.25
	}
	return sc
}

func bottleneckOWD(ds *Dataset) []figureSpec {
	const name, title, source = "bottleneck-owd", "Bottleneck: one-way delay vs target rate", "Riegel Fig. 4.4"
	dps := ds.dataPlanes(expBottleneck)
	curves := map[string][]curvePoint{}
	var all []float64
	var order []string
	for _, dp := range dps {
		c := curve(ds, expBottleneck, dp, "owd")
		if len(c) == 0 {
			continue
		}
		curves[dp] = c
		order = append(order, dp)
		for _, pt := range c {
			all = append(all, quantile(pt.sorted, 0.9))
		}
	}
	if len(order) == 0 {
		return []figureSpec{skipped(name, title, source, "no owd samples of the bottleneck experiment in this run")}
	}
	p := newPlot(title, "", "")
	p.Legend.Left = true
	var cs [][]curvePoint
	for _, dp := range order {
		cs = append(cs, curves[dp])
	}
	xs := rateAxis(p, cs...)
	ys := scaleFor("s", maxAbs(all))
	p.Y.Label.Text = axisLabel("one-way delay", ys)
	p.Y.Min = 0
	lo := math.Inf(1)
	for _, dp := range order {
		for _, pt := range curves[dp] {
			lo = math.Min(lo, quantile(pt.sorted, 0.1))
		}
	}
	if hi := maxAbs(all); lo > 0 && hi/lo > 30 {
		// Delays a hundred times apart: a log axis keeps the fast data planes apart.
		p.Y.Scale = plot.LogScale{}
		p.Y.Tick.Marker = niceTicks{}
		p.Y.Min, p.Y.Max = ys.of(lo)/1.3, ys.of(hi)*1.3
	}
	for i, dp := range order {
		var pts plotter.XYs
		var errs plotter.YErrors
		for _, pt := range curves[dp] {
			m := median(pt.sorted)
			lo, hi := quantile(pt.sorted, 0.1), quantile(pt.sorted, 0.9)
			if !finite(m) || !finite(lo) || !finite(hi) {
				continue
			}
			pts = append(pts, plotter.XY{X: xs.of(pt.x), Y: ys.of(m)})
			errs = append(errs, struct{ Low, High float64 }{ys.of(m - lo), ys.of(hi - m)})
		}
		if len(pts) == 0 {
			continue
		}
		c := ds.Subjects.Colour(dp)
		l, sp, err := plotter.NewLinePoints(pts)
		if err != nil {
			continue
		}
		l.LineStyle = lineStyle(c, 1.8)
		l.LineStyle.Dashes = seriesDashes(i)
		sp.Color, sp.Shape, sp.Radius = c, seriesGlyph(i), vg.Points(2.5)
		eb, err := plotter.NewYErrorBars(struct {
			plotter.XYs
			plotter.YErrors
		}{pts, errs})
		if err == nil {
			eb.LineStyle = lineStyle(c, 1)
			p.Add(eb)
		}
		p.Add(l, sp)
		p.Legend.Add(dp, l, sp)
	}
	return []figureSpec{{name: name, title: title, source: source, p: p,
		caption: "Median one-way delay of the UDP stream at each target rate; bars span the 10th to 90th percentile (a log axis when delays differ a hundredfold). The thesis ran this sweep for the user-space proxy only."}}
}

// curves collects a metric's curve of every data plane of an experiment that has one: the
// data planes in order, their curves, and every point's median (for the axis range).
func curves(ds *Dataset, exp, metric string) (order []string, cs [][]curvePoint, all []float64) {
	for _, dp := range ds.dataPlanes(exp) {
		c := curve(ds, exp, dp, metric)
		if len(c) == 0 {
			continue
		}
		order = append(order, dp)
		cs = append(cs, c)
		for _, pt := range c {
			all = append(all, median(pt.sorted))
		}
	}
	return order, cs, all
}

// rateCurves draws one line per data plane of a metric's median at each target rate.
func rateCurves(ds *Dataset, name, title, source, metric, quantity, unit, caption string) figureSpec {
	order, cs, all := curves(ds, expBottleneck, metric)
	if len(order) == 0 {
		return skipped(name, title, source, fmt.Sprintf("no %s samples of the bottleneck experiment in this run", metric))
	}
	p := newPlot(title, "", "")
	p.Legend.Left = true
	xs := rateAxis(p, cs...)
	ys := scaleFor(unit, maxAbs(all))
	p.Y.Label.Text = axisLabel(quantity, ys)
	p.Y.Min = 0
	if m := ys.of(maxAbs(all)); m == 0 {
		p.Y.Max = 1
	}
	for i, dp := range order {
		var pts plotter.XYs
		for _, pt := range cs[i] {
			if m := median(pt.sorted); finite(m) {
				pts = append(pts, plotter.XY{X: xs.of(pt.x), Y: ys.of(m)})
			}
		}
		if len(pts) == 0 {
			continue
		}
		l, sp, err := plotter.NewLinePoints(pts)
		if err != nil {
			continue
		}
		c := ds.Subjects.Colour(dp)
		l.LineStyle = lineStyle(c, 1.8)
		l.LineStyle.Dashes = seriesDashes(i)
		sp.Color, sp.Shape, sp.Radius = c, seriesGlyph(i), vg.Points(2.5)
		p.Add(l, sp)
		p.Legend.Add(dp, l, sp)
	}
	return figureSpec{name: name, title: title, source: source, p: p, caption: caption, categories: order, xScale: xs, yScale: ys}
}

func bottleneckLoss(ds *Dataset) []figureSpec {
	f := rateCurves(ds, "bottleneck-loss", "Bottleneck: loss vs target rate", "Riegel Fig. 4.4",
		"loss", "loss", "percent", "Percentage of the datagrams sent at each target rate that did not arrive (median over repetitions). Open squares: the user-space proxy's loss the thesis names (1.6 % at 250, 45 % at 500 Mbit/s); it ran the sweep for that proxy only.")
	if f.p != nil {
		var pts plotter.XYs
		for _, t := range riegelBottleneckLoss {
			pts = append(pts, plotter.XY{X: f.xScale.of(t.rate), Y: f.yScale.of(t.loss)})
		}
		thesisPoints(f.p, pts, ds.Subjects.Colour("userspace"), "thesis userspace: "+thesisBottleneckLoss())
		if _, ok := f.p.X.Scale.(plot.LogScale); ok {
			f.p.X.Max = math.Max(f.p.X.Max, f.xScale.of(riegelBottleneckLoss[len(riegelBottleneckLoss)-1].rate)*1.25)
		}
	}
	return []figureSpec{f}
}

func bottleneckRates(ds *Dataset) []figureSpec {
	const name, title, source = "bottleneck-rates", "Bottleneck: achieved rates vs target rate", "ours"
	dps := ds.dataPlanes(expBottleneck)
	type pair struct {
		dp         string
		sent, recv []curvePoint
	}
	var ps []pair
	var cs [][]curvePoint
	for _, dp := range dps {
		s, r := curve(ds, expBottleneck, dp, "send_rate"), curve(ds, expBottleneck, dp, "throughput")
		if len(s) == 0 && len(r) == 0 {
			continue
		}
		ps = append(ps, pair{dp, s, r})
		cs = append(cs, s, r)
	}
	if len(ps) == 0 {
		return []figureSpec{skipped(name, title, source, "no send_rate or throughput samples of the bottleneck experiment in this run")}
	}
	p := newPlot(title, "", "")
	p.Legend.Top = false
	p.Legend.YOffs = vg.Points(8)
	xs := rateAxis(p, cs...)
	p.Y.Label.Text = axisLabel("achieved rate", xs)
	if _, ok := p.X.Scale.(plot.LogScale); ok {
		p.Y.Scale = plot.LogScale{}
		p.Y.Tick.Marker = niceTicks{}
		p.Y.Min, p.Y.Max = p.X.Min, p.X.Max
		if ref, err := plotter.NewLine(plotter.XYs{{X: p.X.Min, Y: p.X.Min}, {X: p.X.Max, Y: p.X.Max}}); err == nil {
			ref.LineStyle = draw.LineStyle{Color: color.Gray{0x99}, Width: vg.Points(1), Dashes: []vg.Length{vg.Points(2), vg.Points(3)}}
			p.Add(ref)
			p.Legend.Add("target", ref)
		}
	}
	for _, pr := range ps {
		c := ds.Subjects.Colour(pr.dp)
		for k, cv := range [][]curvePoint{pr.sent, pr.recv} {
			var pts plotter.XYs
			for _, pt := range cv {
				if m := median(pt.sorted); finite(m) && m > 0 {
					pts = append(pts, plotter.XY{X: xs.of(pt.x), Y: xs.of(m)})
				}
			}
			if len(pts) == 0 {
				continue
			}
			l, sp, err := plotter.NewLinePoints(pts)
			if err != nil {
				continue
			}
			l.LineStyle = lineStyle(c, 1.6)
			sp.Color, sp.Radius = c, vg.Points(2.5)
			label := pr.dp + " sent"
			if k == 1 {
				l.LineStyle.Dashes = []vg.Length{vg.Points(5), vg.Points(3)}
				sp.Shape = draw.BoxGlyph{}
				label = pr.dp + " received"
			} else {
				sp.Shape = draw.CircleGlyph{}
			}
			p.Add(l, sp)
			p.Legend.Add(label, l, sp)
		}
	}
	return []figureSpec{{name: name, title: title, source: source, p: p,
		caption: "The rate the sender achieved (solid) and the distinct payload rate received (dashed) at each target rate, against the target (grey). Where the sender falls short of the target, the sender, not the data plane, is the limit."}}
}

func bottleneckCPUPerPacket(ds *Dataset) []figureSpec {
	s := rateCurves(ds, "bottleneck-cpu-per-packet", "Bottleneck: CPU time per packet vs target rate", "ours",
		"cpu_ns_per_pkt", "CPU time per packet", "ns",
		"CPU time of edgebpf, its child processes and the kernel's ksoftirqd threads at each target rate, net of their idle rate in the pause before, divided by the datagrams delivered (median over repetitions). "+
			"The meter's own sender and receiver cost the same on every data plane, so at one rate the differences are the data planes'; it stays comparable where the sender cannot reach the target.")
	if s.p != nil {
		s.p.Legend.Left = false // the fixed cost per second makes low rates the highest
	}
	return []figureSpec{s}
}

// --- CPU and RAM -----------------------------------------------------------------------

// ewmaAlpha is the smoothing of the CPU figures, as in the thesis.
const ewmaAlpha = 0.2

func cpuPerDataPlane(ds *Dataset) []figureSpec {
	const source = "Riegel Figs. 4.5, 4.6"
	dps := ds.dataPlanes(expResources)
	var out []figureSpec
	for _, dp := range dps {
		name, title := "cpu-"+fileSafe(dp), "CPU usage over time: "+dp
		ts := collectTimeSeries(ds, expResources, dp, "cpu")
		if len(ts.t) == 0 {
			continue
		}
		ymax := math.Max(1, maxAbs(ts.allV)*1.3)
		if r, ok := riegelFor(expResources, "cpu", "load"); ok {
			if v, ok := r.mean(dp); ok {
				ymax = math.Max(ymax, v*1.3) // room for the thesis's line
			}
		}
		if m := maxAbs(ts.allV); m <= 100 {
			ymax = math.Min(ymax, 100) // a share of all cores; above 100 % is empty space
		}
		p := newPlot(title, "time since the start of the run (s)", "CPU busy, all cores (%)")
		p.Legend.Left = true
		p.Y.Min, p.Y.Max = 0, ymax
		spans := phases(ds, []string{dp})
		shadePhases(p, spans, 0, ymax)
		thesisLoadCPU(ds, p, spans, dp)
		caption := "System-wide CPU busy share every interval of every repetition (grey) and the EWMA (α = 0.2) of the median over repetitions at each interval; the Idle, Load (100 Mbit/s TCP) and Cleanup phases are shaded." + thesisCPUNote
		if markLifecycle(ds, p, []string{dp}, 0, ymax) {
			caption += lifecycleNote
		}
		sc, err := plotter.NewScatter(xyLine(ts.allT, ts.allV))
		if err == nil {
			sc.Color = color.Gray{0x90}
			sc.Shape = draw.CircleGlyph{}
			sc.Radius = vg.Points(1.1)
			p.Add(sc)
			p.Legend.Add(fmt.Sprintf("samples (%s)", plural(len(ts.reps), "run")), sc)
		}
		sm, err := stats.EWMA(ts.v, ewmaAlpha)
		if err == nil {
			if l, err := plotter.NewLine(xyLine(ts.t, sm)); err == nil {
				l.LineStyle = lineStyle(ds.Subjects.Colour(dp), 2.2)
				p.Add(l)
				p.Legend.Add("EWMA α=0.2 of the median", l)
			}
		}
		out = append(out, figureSpec{name: name, title: title, source: source, p: p, caption: caption})
	}
	if len(out) == 0 {
		return []figureSpec{skipped("cpu-<dataplane>", "CPU usage over time", source, "no cpu samples of the resources experiment in this run")}
	}
	return out
}

// thesisCPUNote ends the caption of a CPU figure with Riegel's load-phase means on it.
const thesisCPUNote = " Dotted over the Load phase: the thesis's load-phase mean (Table 5.1) for the user-space and the eBPF proxy, a share of the xl170's 10 cores where ours is of this machine's cores."

// thesisLoadCPU draws the thesis's load-phase CPU mean of dp across the load phase.
func thesisLoadCPU(ds *Dataset, p *plot.Plot, spans []phaseSpan, dp string) {
	r, ok := riegelFor(expResources, "cpu", "load")
	v, vok := r.mean(dp)
	if !ok || !vok {
		return
	}
	for _, sp := range spans {
		if sp.name == "load" && sp.end > sp.start {
			thesisLine(p, sp.start, v, sp.end, v, ds.Subjects.Colour(dp), thesisLabel(dp, r.sc.withUnit(v), "mean"))
		}
	}
}

func fileSafe(s string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' {
			return r
		}
		return '_'
	}, s)
}

// overTime draws the median over repetitions of a resources metric for every data plane.
func overTime(ds *Dataset, name, title, source, metric, quantity, caption string, smooth bool) figureSpec {
	dps := ds.dataPlanes(expResources)
	var names []string
	var series []timeSeries
	var all [][]float64
	for _, dp := range dps {
		ts := collectTimeSeries(ds, expResources, dp, metric)
		if len(ts.t) == 0 {
			continue
		}
		names = append(names, dp)
		series = append(series, ts)
		all = append(all, ts.v)
	}
	if len(names) == 0 {
		return skipped(name, title, source, fmt.Sprintf("no %s samples of the resources experiment in this run", metric))
	}
	unit := lookupMetric(metric, "").Unit
	sc := scaleFor(unit, maxAbs(all...))
	if unit == "bytes" {
		sc = scale{1.0 / (1 << 20), "MiB", 1} // changes of a few MiB on GiB show as such
	}
	p := newPlot(title, "time since the start of the run (s)", axisLabel(quantity, sc))
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, s := range series {
		for _, v := range s.v {
			lo, hi = math.Min(lo, sc.of(v)), math.Max(hi, sc.of(v))
		}
	}
	if unit == "percent" {
		lo = 0
	}
	pad := math.Max((hi-lo)*0.35, math.Max(math.Abs(hi)*0.01, 1e-9))
	ymin, ymax := lo, hi+pad
	if unit != "percent" {
		ymin = lo - pad/3
	} else if hi <= 100 {
		ymax = math.Min(ymax, 100) // a share of all cores; above 100 % is empty space
	}
	p.Y.Min, p.Y.Max = ymin, ymax
	shadePhases(p, phases(ds, names), ymin, ymax)
	if markLifecycle(ds, p, names, ymin, ymax) {
		caption += lifecycleNote
	}
	for i, s := range series {
		ys := s.v
		if smooth {
			if sm, err := stats.EWMA(s.v, ewmaAlpha); err == nil {
				ys = sm
			}
		}
		scaled := make([]float64, len(ys))
		for j, v := range ys {
			scaled[j] = sc.of(v)
		}
		l, err := plotter.NewLine(xyLine(s.t, scaled))
		if err != nil {
			continue
		}
		l.LineStyle = lineStyle(ds.Subjects.Colour(names[i]), 2)
		l.LineStyle.Dashes = seriesDashes(i)
		p.Add(l)
		p.Legend.Add(names[i], l)
	}
	return figureSpec{name: name, title: title, source: source, p: p, caption: caption, categories: names, yScale: sc}
}

func cpuCompare(ds *Dataset) []figureSpec {
	f := overTime(ds, "cpu-ewma", "CPU usage over time, all data planes", "ours", "cpu", "CPU busy, all cores",
		"EWMA (α = 0.2) of the median system-wide CPU busy share over repetitions, one line per data plane, phases shaded."+thesisCPUNote, true)
	if f.p != nil {
		spans := phases(ds, f.categories)
		for _, dp := range f.categories {
			thesisLoadCPU(ds, f.p, spans, dp)
		}
	}
	return []figureSpec{f}
}

func ramTime(ds *Dataset) []figureSpec {
	return []figureSpec{overTime(ds, "ram", "RAM used over time", "Riegel §4.5", "ram", "RAM used",
		"MemTotal − MemAvailable, median over repetitions at each interval, one line per data plane; the thesis saw no change.", false)}
}

func cpuPerGbit(ds *Dataset) []figureSpec {
	const name, title, source = "cpu-per-gbit", "CPU per Gbit/s during the load phase", "ours"
	dps := ds.dataPlanes(expResources)
	var names []string
	var vals []float64
	for _, dp := range dps {
		c, ok1 := ds.entry(expResources, dp, "cpu", "load")
		t, ok2 := ds.entry(expResources, dp, "throughput", "load")
		if !ok1 || !ok2 || c.N == 0 || t.N == 0 || !(t.Median > 0) {
			continue
		}
		v := c.Median / (t.Median / 1e9)
		if !finite(v) {
			continue
		}
		names = append(names, dp)
		vals = append(vals, v)
	}
	if len(names) == 0 {
		return []figureSpec{skipped(name, title, source, "needs cpu and throughput samples of the resources experiment's load phase")}
	}
	p := newPlot(title, "", "CPU busy per Gbit/s (% of all cores)")
	labels := make([]string, len(names))
	for i, dp := range names {
		b, err := plotter.NewBarChart(plotter.Values{vals[i]}, vg.Points(46))
		if err != nil {
			continue
		}
		b.XMin = float64(i)
		b.Color = withAlpha(ds.Subjects.Colour(dp), 0.8)
		b.LineStyle = lineStyle(ds.Subjects.Colour(dp), 1)
		p.Add(b)
		labels[i] = fmt.Sprintf("%s: %.3g", dp, vals[i])
	}
	p.NominalX(labels...)
	p.X.Min, p.X.Max = -0.6, float64(len(names))-0.4
	p.Y.Min, p.Y.Max = 0, maxAbs(vals)*1.15
	return []figureSpec{{name: name, title: title, source: source, p: p,
		caption: "Median system-wide CPU busy share in the load phase divided by the load's median throughput in Gbit/s. The load generator and its receiver run inside edgebpf and are included, as iperf3 was in the thesis."}}
}

func bpfCost(ds *Dataset) []figureSpec {
	const name, title, source = "bpf-cost", "BPF program cost per packet", "ours"
	type key struct{ dp, prog string }
	vals := map[key][]float64{}
	unit := stats.BPFNsPerPkt.Unit
	var progs, dps []string
	for k, idx := range ds.index {
		base, qual, _ := strings.Cut(k.metric, ":")
		if base != stats.BPFNsPerPkt.Name {
			continue
		}
		for _, i := range idx {
			r := &ds.Rows[i]
			if !finite(r.Value) {
				continue
			}
			prog := qual
			if prog == "" {
				prog = r.X
			}
			if prog == "" {
				prog = "program"
			}
			// A program's cost depends on the traffic (a connect per packet, bulk data):
			// one bar per experiment.
			prog = k.exp + "\n" + prog
			unit = r.Unit
			kk := key{k.dp, prog}
			if _, ok := vals[kk]; !ok {
				if !slices.Contains(progs, prog) {
					progs = append(progs, prog)
				}
				if !slices.Contains(dps, k.dp) {
					dps = append(dps, k.dp)
				}
			}
			vals[kk] = append(vals[kk], r.Value)
		}
	}
	if len(vals) == 0 {
		return []figureSpec{skipped(name, title, source, "no bpf_ns_per_pkt samples in this run (an eBPF data plane records them from the kernel's BPF statistics)")}
	}
	slices.Sort(progs)
	ds.Subjects.Sort(dps)
	var all []float64
	med := map[key]float64{}
	for k, v := range vals {
		s := sortedFinite(v)
		med[k] = median(s)
		all = append(all, med[k])
	}
	sc := scaleFor(unit, maxAbs(all))
	p := newPlot(title, "", axisLabel("run time per packet", sc))
	p.Legend.Top = true
	w := vg.Points(math.Max(8, 60/float64(len(dps))))
	for j, dp := range dps {
		v := make(plotter.Values, len(progs))
		for i, prog := range progs {
			if m, ok := med[key{dp, prog}]; ok && finite(m) {
				v[i] = sc.of(m)
			}
		}
		b, err := plotter.NewBarChart(v, w)
		if err != nil {
			continue
		}
		b.Offset = w * vg.Length(float64(j)-float64(len(dps)-1)/2)
		b.Color = withAlpha(ds.Subjects.Colour(dp), 0.8)
		b.LineStyle = lineStyle(ds.Subjects.Colour(dp), 1)
		p.Add(b)
		p.Legend.Add(dp, b)
	}
	p.NominalX(progs...)
	p.X.Min, p.X.Max = -0.6, float64(len(progs))-0.4
	p.Y.Min, p.Y.Max = 0, sc.of(maxAbs(all))*1.2
	return []figureSpec{{name: name, title: title, source: source, p: p,
		caption: "Median over repetitions of each BPF program's run time per packet in each experiment, from the kernel's BPF statistics (run time / run count over a repetition; edgebpf run --bpf-stats), per data plane."}}
}

// --- speed limit -----------------------------------------------------------------------

func speedlimitResponseBox(ds *Dataset) []figureSpec {
	dps, vals := valuesPerDataPlane(ds, expSLResponse, stats.ResponseTime.Name)
	f := boxFigure(ds, "speedlimit-response-box", "Speed limit: time per request", "Weinhold Fig. 5.3", "time per request", "s",
		"Wall-clock time of every request (send to reply) per server configuration, all clients and repetitions pooled (boxes drawn from 1001 evenly spaced order statistics when there are more samples). Open squares: the thesis's medians (Table 5.4, one execution, time for all requests / their number).",
		dps, vals, "no response_time samples of the speedlimit-response experiment in this run")
	return []figureSpec{markThesisBoxes(ds, f, weinholdMedian(thesis54), "median")}
}

func speedlimitDropPoint(ds *Dataset) []figureSpec {
	dps, vals := valuesPerDataPlane(ds, expSLDropPoint, stats.DropPoint.Name)
	f := boxFigure(ds, "speedlimit-droppoint", "Speed limit: clients until the first drop", "Weinhold Fig. 5.5", "clients", "count",
		"Concurrent clients the server answered without a timeout before the first drop, one value per repetition, per server configuration. Open squares: the thesis's medians (Table 5.6).",
		dps, vals, "no drop_point samples of the speedlimit-droppoint experiment in this run")
	if f.p != nil && markCensored(ds, f.p, dps, vals) {
		f.caption += " An open triangle (≥) marks a repetition that found no drop up to the search's cap: a lower bound, not a measured drop point."
	}
	return []figureSpec{markThesisBoxes(ds, f, weinholdMedian(thesis56), "median")}
}

// clientStat is one client's per-repetition median and standard deviation of its time
// per request.
type clientStat struct{ med, sd []float64 }

// clientStats collects the per-client rows of the speedlimit-response experiment: the
// configurations that have them, each one's clients, and every median (for the axis).
func clientStats(ds *Dataset) (order []string, per map[string]map[int]*clientStat, all []float64) {
	per = map[string]map[int]*clientStat{}
	for _, dp := range ds.dataPlanes(expSLResponse) {
		m := map[int]*clientStat{}
		ds.rows(expSLResponse, dp, stats.ClientMedian.Name, func(r *Row) {
			if finite(r.Value) {
				if m[r.Seq] == nil {
					m[r.Seq] = &clientStat{}
				}
				m[r.Seq].med = append(m[r.Seq].med, r.Value)
			}
		})
		ds.rows(expSLResponse, dp, stats.ClientStddev.Name, func(r *Row) {
			if finite(r.Value) && m[r.Seq] != nil {
				m[r.Seq].sd = append(m[r.Seq].sd, r.Value)
			}
		})
		if len(m) == 0 {
			continue
		}
		order = append(order, dp)
		per[dp] = m
		for _, c := range m {
			all = append(all, c.med...)
		}
	}
	return order, per, all
}

func speedlimitClients(ds *Dataset) []figureSpec {
	const name, title, source = "speedlimit-clients", "Speed limit: per-client median and standard deviation", "Weinhold Fig. 5.4"
	order, per, all := clientStats(ds)
	if len(order) == 0 {
		return []figureSpec{skipped(name, title, source, "no client_median samples of the speedlimit-response experiment in this run")}
	}
	sc := scaleFor("s", maxAbs(all))
	p := newPlot(title, "client", axisLabel("time per request", sc))
	p.Y.Min, p.Y.Max = 0, sc.of(maxAbs(all))*1.35
	clipped := false
	for j, dp := range order {
		var pts plotter.XYs
		var errs plotter.YErrors
		for _, client := range sortedKeys(per[dp]) {
			c := per[dp][client]
			ms, ss := sortedFinite(c.med), sortedFinite(c.sd)
			m := median(ms)
			s := 0.0
			if len(ss) > 0 {
				s = median(ss)
			}
			if !finite(m) {
				continue
			}
			off := (float64(j) - float64(len(order)-1)/2) * 0.25
			pts = append(pts, plotter.XY{X: float64(client) + off, Y: sc.of(m)})
			// A time is never negative: the bar stops at zero, and the caption says so.
			low := s
			if m-s < 0 {
				low, clipped = m, true
			}
			errs = append(errs, struct{ Low, High float64 }{sc.of(low), sc.of(s)})
		}
		if len(pts) == 0 {
			continue
		}
		c := ds.Subjects.Colour(dp)
		sp, err := plotter.NewScatter(pts)
		if err != nil {
			continue
		}
		sp.Color, sp.Shape, sp.Radius = withAlpha(c, 0.85), seriesGlyph(j), vg.Points(2.4)
		if eb, err := plotter.NewYErrorBars(struct {
			plotter.XYs
			plotter.YErrors
		}{pts, errs}); err == nil {
			eb.LineStyle = lineStyle(withAlpha(c, 0.5), 0.8)
			eb.CapWidth = vg.Points(2)
			p.Add(eb)
		}
		p.Add(sp)
		p.Legend.Add(dp, sp)
	}
	offScale := thesisLevels(ds, p, order, sc, weinholdMedian(thesis55), "median, Table 5.5")
	caption := "For each client: the median over repetitions of its median time per request (points, one shape per configuration, side by side) and of its standard deviation (bars, ±), per server configuration."
	if clipped {
		caption += " Bars that would reach below zero stop at zero."
	}
	caption += " Dotted: the thesis's median over 96 executions of the median time per request (Table 5.5)."
	if offScale {
		caption += offScaleNote
	}
	return []figureSpec{{name: name, title: title, source: source, p: p, caption: caption}}
}

func speedlimitScaling(ds *Dataset) []figureSpec {
	const name, title, source = "speedlimit-scaling", "Speed limit: time per request vs clients", "Weinhold Fig. 5.6"
	metric := stats.ResponseTime.Name
	if !ds.has(expSLScaling, metric) {
		metric = stats.MeanRequestTime.Name
	}
	order, cs, all := curves(ds, expSLScaling, metric)
	if len(order) == 0 {
		return []figureSpec{skipped(name, title, source, "no response_time samples with a client count of the speedlimit-scaling experiment in this run")}
	}
	sc := scaleFor("s", maxAbs(all))
	p := newPlot(title, "concurrent clients", axisLabel("median time per request", sc))
	p.Legend.Left = true
	p.Y.Min = 0
	for i, dp := range order {
		var xs, ys []float64
		for _, pt := range cs[i] {
			if m := median(pt.sorted); finite(m) {
				xs = append(xs, pt.x)
				ys = append(ys, sc.of(m))
			}
		}
		if len(xs) == 0 {
			continue
		}
		c := ds.Subjects.Colour(dp)
		sp, err := plotter.NewScatter(xyLine(xs, ys))
		if err != nil {
			continue
		}
		sp.Color, sp.Shape, sp.Radius = withAlpha(c, 0.85), seriesGlyph(i), vg.Points(2.6)
		p.Add(sp)
		label := dp
		if fit, err := stats.LinearFit(xs, ys); err == nil {
			x0, x1 := slices.Min(xs), slices.Max(xs)
			if l, err := plotter.NewLine(xyLine([]float64{x0, x1}, []float64{fit.Intercept + fit.Slope*x0, fit.Intercept + fit.Slope*x1})); err == nil {
				l.LineStyle = lineStyle(withAlpha(c, 0.8), 1.6)
				l.LineStyle.Dashes = []vg.Length{vg.Points(6), vg.Points(3)}
				p.Add(l)
				label = fmt.Sprintf("%s: %s", dp, fit)
				p.Legend.Add(label, sp, l)
				continue
			}
		}
		p.Legend.Add(label, sp)
	}
	return []figureSpec{{name: name, title: title, source: source, p: p,
		caption: fmt.Sprintf("Median time per request at each number of concurrent clients (points, one shape per configuration) with its least-squares line (dashed) and equation (x in clients, y in %s), per server configuration. The thesis gives this figure's fits only as a plot, with no numbers to draw beside ours.", sc.unit)}}
}

func speedlimitLoad(ds *Dataset) []figureSpec {
	const source = "ours"
	type spec struct{ name, title, metric, quantity, unit, caption string }
	var out []figureSpec
	for _, s := range []spec{
		{"speedlimit-load-time", "Speed limit: time per request vs offered rate", stats.ResponseTime.Name, "median time per request", "s",
			"Median time per request at each offered request rate, per server configuration."},
		{"speedlimit-load-rate", "Speed limit: achieved vs offered rate", stats.AchievedRate.Name, "achieved rate", "req/s",
			"Median rate of answered requests at each offered request rate, per server configuration."},
	} {
		dps := ds.dataPlanes(expSLLoad)
		var order []string
		var cs [][]curvePoint
		var all, allX []float64
		for _, dp := range dps {
			c := curve(ds, expSLLoad, dp, s.metric)
			if len(c) == 0 {
				continue
			}
			order = append(order, dp)
			cs = append(cs, c)
			for _, pt := range c {
				all = append(all, median(pt.sorted))
				allX = append(allX, pt.x)
			}
		}
		if len(order) == 0 {
			out = append(out, skipped(s.name, s.title, source, fmt.Sprintf("no %s samples of the speedlimit-load experiment in this run", s.metric)))
			continue
		}
		ys := scaleFor(s.unit, maxAbs(all))
		xs := scaleFor("req/s", maxAbs(allX))
		p := newPlot(s.title, axisLabel("offered rate", xs), axisLabel(s.quantity, ys))
		p.Legend.Left = true
		p.Y.Min = 0
		for i, dp := range order {
			var pts plotter.XYs
			for _, pt := range cs[i] {
				if m := median(pt.sorted); finite(m) {
					pts = append(pts, plotter.XY{X: xs.of(pt.x), Y: ys.of(m)})
				}
			}
			l, sp, err := plotter.NewLinePoints(pts)
			if err != nil {
				continue
			}
			c := ds.Subjects.Colour(dp)
			l.LineStyle = lineStyle(withAlpha(c, 0.85), 1.8)
			l.LineStyle.Dashes = seriesDashes(i)
			sp.Color, sp.Shape, sp.Radius = c, seriesGlyph(i), vg.Points(2.8)
			p.Add(l, sp)
			p.Legend.Add(dp, l, sp)
		}
		out = append(out, figureSpec{name: s.name, title: s.title, source: source, p: p, caption: s.caption})
	}
	return out
}
