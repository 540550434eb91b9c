package reports

import (
	"image/color"
	"math"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
)

// The theses' values on the figures: dotted lines and open squares in the data plane's
// colour, every one labelled "thesis" in the legend. The numbers come from thesis.go.

// thesisDashes is the dash pattern of every thesis reference line.
var thesisDashes = []vg.Length{vg.Points(1.5), vg.Points(2.5)}

// thesisLine adds a dotted reference line from (x0, y0) to (x1, y1) with a legend entry.
func thesisLine(p *plot.Plot, x0, y0, x1, y1 float64, c color.Color, label string) {
	if !finite(x0) || !finite(y0) || !finite(x1) || !finite(y1) {
		return
	}
	l, err := plotter.NewLine(plotter.XYs{{X: x0, Y: y0}, {X: x1, Y: y1}})
	if err != nil {
		return
	}
	l.LineStyle = draw.LineStyle{Color: c, Width: vg.Points(1.6), Dashes: thesisDashes}
	p.Add(l)
	p.Legend.Add(label, l)
}

// thesisPoints adds open squares at the thesis's values with a legend entry.
func thesisPoints(p *plot.Plot, pts plotter.XYs, c color.Color, label string) {
	var ok plotter.XYs
	for _, pt := range pts {
		if finite(pt.X) && finite(pt.Y) {
			ok = append(ok, pt)
		}
	}
	if len(ok) == 0 {
		return
	}
	sp, err := plotter.NewScatter(ok)
	if err != nil {
		return
	}
	sp.Shape, sp.Color, sp.Radius = draw.SquareGlyph{}, c, vg.Points(5)
	p.Add(sp)
	p.Legend.Add(label, sp)
}

// thesisLabel is a legend entry such as "thesis userspace: 4.66 ms (mean)", the value
// printed as the thesis printed it.
func thesisLabel(dp, text, stat string) string {
	s := "thesis"
	if dp != "" {
		s += " " + dp
	}
	return s + ": " + text + " (" + stat + ")"
}

// thesisOf returns a thesis's value for a data plane (base units) and its text as the
// thesis printed it.
type thesisOf func(dp string) (v float64, text string, ok bool)

// riegelMean is the thesis's mean of a Table 5.1 measurement per data plane.
func riegelMean(exp, metric, x string) thesisOf {
	return func(dp string) (float64, string, bool) {
		r, ok := riegelFor(exp, metric, x)
		if !ok {
			return 0, "", false
		}
		v, ok := r.mean(dp)
		return v, r.sc.withUnit(v), ok
	}
}

// weinholdMedian is the median of a Weinhold table per configuration.
func weinholdMedian(m map[string]thesisFigures) thesisOf {
	return func(dp string) (float64, string, bool) {
		v, ok := thesisMedian(m, dp)
		return v, m[dp].sc.withUnit(v), ok
	}
}

// markThesisBoxes puts the thesis's value of each data plane of a box figure at its box,
// and lets the value axis go logarithmic when the thesis's values and ours lie far apart.
func markThesisBoxes(ds *Dataset, f figureSpec, value thesisOf, stat string) figureSpec {
	if f.p == nil {
		return f
	}
	for i, dp := range f.categories {
		v, text, ok := value(dp)
		if !ok {
			continue
		}
		thesisPoints(f.p, plotter.XYs{{X: float64(i), Y: f.yScale.of(v)}}, ds.Subjects.Colour(dp), thesisLabel(dp, text, stat))
	}
	logIfWide(&f.p.Y)
	return f
}

// markThesisCDF draws the thesis's value of each data plane of a CDF figure as a vertical
// line, and lets the x axis go logarithmic when they lie far from ours.
func markThesisCDF(ds *Dataset, f figureSpec, exp, metric string) figureSpec {
	r, ok := riegelFor(exp, metric, "")
	if f.p == nil || !ok {
		return f
	}
	for _, dp := range f.categories {
		v, ok := r.mean(dp)
		if !ok {
			continue
		}
		x := f.xScale.of(v)
		thesisLine(f.p, x, 0, x, 1, ds.Subjects.Colour(dp), thesisLabel(dp, r.sc.withUnit(v), "mean"))
	}
	if _, wasLog := f.p.X.Scale.(plot.LogScale); wasLog {
		f.p.X.Max *= 1.1 // the explicit range grew to the thesis's value: leave it room
	} else {
		logIfWide(&f.p.X)
	}
	return f
}

// offScaleNote ends the caption of a figure with a thesis value off its scale.
const offScaleNote = " A thesis value more than three times the axis's top is marked by a triangle at the top edge instead (its value is in the legend): drawn to scale it would flatten ours."

// thesisLevels draws each data plane's thesis value as a horizontal dotted line across
// the plot, extending a linear axis that starts at zero to it, or, when it lies more than
// three times above the data, as a triangle at the top edge with the value in the legend.
// It reports whether any value was off the scale.
func thesisLevels(ds *Dataset, p *plot.Plot, dps []string, sc scale, value thesisOf, stat string) bool {
	x0, x1 := p.X.Min, p.X.Max
	top := p.Y.Max
	off := false
	for i, dp := range dps {
		v, text, ok := value(dp)
		if !ok {
			continue
		}
		y := sc.of(v)
		if y <= 3*top {
			thesisLine(p, x0, y, x1, y, ds.Subjects.Colour(dp), thesisLabel(dp, text, stat))
			p.Y.Max = math.Max(p.Y.Max, y*1.08)
			continue
		}
		off = true
		x := x1 - (x1-x0)*0.02*float64(i+1)
		sp, err := plotter.NewScatter(plotter.XYs{{X: x, Y: top}})
		if err != nil {
			continue
		}
		sp.Shape, sp.Color, sp.Radius = draw.TriangleGlyph{}, ds.Subjects.Colour(dp), vg.Points(4)
		p.Add(sp)
		p.Legend.Add(thesisLabel(dp, text, stat)+", above the axis", sp)
	}
	return off
}
