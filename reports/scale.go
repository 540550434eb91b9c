package reports

import (
	"fmt"
	"math"
	"slices"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"

	"github.com/edgebpf/edgebpf/stats"
)

// expScale is the scale experiment: its metrics are qualified with their axis
// (deploy_time:services) and its samples carry the axis as x_unit.
const expScale = "scale"

// scaleAxes are the scale experiment's axes in report order, with their x labels.
var scaleAxes = []struct{ name, label string }{
	{"services", "services on the node"},
	{"instances", "instances on the node"},
	{"modules", "chained eBPF modules"},
}

// scaleMetrics are the scale experiment's quantities with their unit and y label.
var scaleMetrics = []struct{ metric, unit, quantity string }{
	{stats.DeployTime.Name, "s", "time to deploy with the services"},
	{stats.AddInstanceTime.Name, "s", "time to add one instance"},
	{stats.CreateModuleTime.Name, "s", "time to create one module on all instances"},
	{stats.RTT.Name, "s", "median connect RTT"},
	{stats.Throughput.Name, "bit/s", "TCP throughput"},
	{stats.BPFNsPerPkt.Name, "ns", "BPF run time per packet, all programs"},
}

// scaleFigures draws every (axis, metric) curve of the scale experiment that has data, the data
// planes as series. The experiment is optional (it runs only when named), so a run without it
// lists no skipped scale figures, as it lists no calibration table.
func scaleFigures(ds *Dataset) []figureSpec {
	var out []figureSpec
	for _, a := range scaleAxes {
		for _, m := range scaleMetrics {
			if f, ok := scaleFigure(ds, a.name, a.label, m.metric, m.unit, m.quantity); ok {
				out = append(out, f)
			}
		}
	}
	return out
}

// scaleFigure draws one metric's median at each step of one axis, a line per data plane; the
// services axis is logarithmic.
func scaleFigure(ds *Dataset, axis, xLabel, metric, unit, quantity string) (figureSpec, bool) {
	qualified := metric + ":" + axis
	order, cs, all := curves(ds, expScale, qualified)
	if len(order) == 0 {
		return figureSpec{}, false
	}
	name := "scale-" + strings.ReplaceAll(metric, "_", "-") + "-" + axis
	title := fmt.Sprintf("Scale: %s vs %s", quantity, axis)
	ys := scaleFor(unit, maxAbs(all))
	p := newPlot(title, xLabel, axisLabel(quantity, ys))
	p.Legend.Left = true
	p.Y.Min = 0
	if ys.of(maxAbs(all)) == 0 {
		p.Y.Max = 1
	}
	if axis == "services" && scaleLogX(cs) {
		p.X.Scale = plot.LogScale{}
		p.X.Tick.Marker = niceTicks{}
	}
	for i, dp := range order {
		var pts plotter.XYs
		for _, pt := range cs[i] {
			if m := median(pt.sorted); finite(m) {
				pts = append(pts, plotter.XY{X: pt.x, Y: ys.of(m)})
			}
		}
		l, sp, err := plotter.NewLinePoints(pts)
		if err != nil {
			continue
		}
		c := ds.Subjects.Colour(dp)
		l.LineStyle = lineStyle(c, 1.8)
		sp.Color, sp.Shape, sp.Radius = c, draw.CircleGlyph{}, vg.Points(2.5)
		p.Add(l, sp)
		p.Legend.Add(dp, l, sp)
	}
	return figureSpec{name: name, title: title, source: "ours", p: p,
		caption: fmt.Sprintf("Median %s at each number of %s (metric %s), per data plane.", quantity, axis, qualified)}, true
}

// scaleLogX says whether every x is positive and they span more than one decade.
func scaleLogX(cs [][]curvePoint) bool {
	lo, hi := math.Inf(1), 0.0
	for _, c := range cs {
		for _, pt := range c {
			lo, hi = math.Min(lo, pt.x), math.Max(hi, pt.x)
		}
	}
	return lo > 0 && hi/lo > 10
}

// scaleSlope fits the medians of a qualified metric of the scale experiment against x (or
// log10 x) and returns the slope, or false with fewer than two points.
func scaleSlope(ds *Dataset, dp, qualified string, logX bool) (float64, bool) {
	var xs, ys []float64
	for _, pt := range curve(ds, expScale, dp, qualified) {
		x := pt.x
		if logX {
			if x <= 0 {
				continue
			}
			x = math.Log10(x)
		}
		if m := median(pt.sorted); finite(m) {
			xs, ys = append(xs, x), append(ys, m)
		}
	}
	fit, err := stats.LinearFit(xs, ys)
	if err != nil {
		return 0, false
	}
	return fit.Slope, true
}

// scaleAt returns the median of a qualified metric of the scale experiment at x.
func scaleAt(ds *Dataset, dp, qualified, x string) (float64, bool) {
	v := sortedFinite(ds.values(expScale, dp, qualified, x))
	if len(v) == 0 {
		return 0, false
	}
	return median(v), true
}

// scaleTable lists per data plane the slopes of the scale experiment's curves (least-squares
// lines through the medians): per 10x services, per 100 instances, per chained module, and the
// times at two points the issue names: a module created on 200 instances and one instance
// added to a node with 4 modules.
func scaleTable(ds *Dataset) *Table {
	dps := ds.dataPlanes(expScale)
	if len(dps) == 0 {
		return nil
	}
	t := &Table{ID: "scale", Title: "Scale: cost per step (slopes of the scale experiment)",
		Intro: "Least-squares slopes through the median at each step: deploying a data plane with its services per 10x services, " +
			"adding one instance and creating one module on all instances per 100 instances on the node, and RTT and BPF time per packet per chained module; " +
			"then two single points. A dash: the data plane has no such axis (modules need an eBPF manager) or the run lacks the step.",
		Header: []string{"data plane", "deploy / 10x services", "add instance / 100 instances", "create module / 100 instances",
			"create module / module", "RTT / module", "BPF ns / module", "create module, 200 instances", "add instance, 4 modules"}}
	cell := func(v float64, ok bool, unit string) string {
		if !ok {
			return "–"
		}
		return scaleFor(unit, math.Abs(v)).withUnit(v)
	}
	for _, dp := range dps {
		row := []string{dp}
		for _, c := range []struct {
			metric, unit string
			logX         bool
			per          float64
		}{
			{"deploy_time:services", "s", true, 1},
			{"add_instance_time:instances", "s", false, 100},
			{"create_module_time:instances", "s", false, 100},
			{"create_module_time:modules", "s", false, 1},
			{"rtt:modules", "s", false, 1},
			{"bpf_ns_per_pkt:modules", "ns", false, 1},
		} {
			v, ok := scaleSlope(ds, dp, c.metric, c.logX)
			row = append(row, cell(v*c.per, ok, c.unit))
		}
		v, ok := scaleAt(ds, dp, "create_module_time:instances", "200")
		row = append(row, cell(v, ok, "s"))
		v, ok = scaleAt(ds, dp, "add_instance_time:modules", "4")
		row = append(row, cell(v, ok, "s"))
		t.Rows = append(t.Rows, row)
	}
	if slices.Contains(dps, "direct") {
		t.Notes = append(t.Notes, "direct deploys nothing: its deploy time is the node's own cost of registering the services, which every data plane pays too "+
			"(the node rewrites its session record on every service, so it grows faster than linearly); a data plane's own cost is the difference.")
	}
	if slices.Contains(dps, "ebpf") {
		t.Notes = append(t.Notes, "Creating a module attaches two TCX programs per instance, and adding an instance two per module: every TCX attach and detach "+
			"waits for a normal RCU grace period (synchronize_rcu in the kernel's TCX path, under RTNL, so attaches to different veths do not overlap). "+
			"A grace period lasts a few scheduler ticks and grows with load (HZ=250 and a loaded 2-core VM: 12 - 80 ms); with /sys/kernel/rcu_expedited = 1 "+
			"the kernel expedites it (0.1 - 0.6 ms on the same VM). See README, \"Module chains at scale\".")
	}
	return t
}
