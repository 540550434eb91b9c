package reports

import (
	"bytes"
	"fmt"
	"image/color"
	"math"
	"slices"
	"strconv"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/font"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
	"gonum.org/v1/plot/vg/vgsvg"
)

// Figure size and the resolution of the PNG files: 144 dpi draws crisp lines when the page
// shows a figure at half its pixel width.
const (
	figWidth  = 7 * vg.Inch
	figHeight = 4.2 * vg.Inch
	pngDPI    = 144
	// maxPoints bounds the points of one plotted line or box: a CDF or a box of a million
	// values is drawn from this many evenly spaced order statistics, which look the same
	// and keep SVG files small.
	maxPoints = 1001
)

// finite reports whether v is neither NaN nor ±Inf. Every value a figure draws passes it.
func finite(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) }

// scale turns base-unit values into a unit a reader takes in at a glance.
type scale struct {
	factor float64
	unit   string // "" for plain numbers
	prec   int    // decimals in tables; -1: %.4g
}

func (s scale) of(v float64) float64 { return v * s.factor }

// format prints v (a base-unit value) in the scale, without the unit.
func (s scale) format(v float64) string {
	if !finite(v) {
		return "–"
	}
	if s.prec < 0 {
		return strconv.FormatFloat(s.of(v), 'g', 4, 64)
	}
	return strconv.FormatFloat(s.of(v), 'f', s.prec, 64)
}

// withUnit prints v in the scale with its unit.
func (s scale) withUnit(v float64) string {
	if s.unit == "" || !finite(v) {
		return s.format(v)
	}
	if s.unit == "%" {
		return s.format(v) + " %"
	}
	return s.format(v) + " " + s.unit
}

// scaleFor picks the scale in which ref (a typical or the largest magnitude) reads best,
// matching FormatValue's choices.
func scaleFor(unit string, ref float64) scale {
	a := math.Abs(ref)
	if !finite(a) {
		a = 0
	}
	switch unit {
	case "s":
		switch {
		case a == 0 || a < 1e-3:
			return scale{1e6, "µs", 1}
		case a < 1:
			return scale{1e3, "ms", 3}
		}
		return scale{1, "s", 3}
	case "bit/s":
		switch {
		case a >= 1e9:
			return scale{1e-9, "Gbit/s", 2}
		case a >= 1e6:
			return scale{1e-6, "Mbit/s", 1}
		case a >= 1e3:
			return scale{1e-3, "kbit/s", 1}
		}
		return scale{1, "bit/s", 0}
	case "bytes":
		switch {
		case a >= 1<<30:
			return scale{1.0 / (1 << 30), "GiB", 2}
		case a >= 1<<20:
			return scale{1.0 / (1 << 20), "MiB", 1}
		case a >= 1<<10:
			return scale{1.0 / (1 << 10), "KiB", 1}
		}
		return scale{1, "B", 0}
	case "percent":
		return scale{1, "%", 2}
	case "count":
		return scale{1, "", -1}
	case "req/s":
		switch {
		case a >= 1e6:
			return scale{1e-6, "M req/s", 2}
		case a >= 1e4:
			return scale{1e-3, "k req/s", 1}
		}
	}
	return scale{1, unit, -1}
}

// axisLabel is "name (unit)".
func axisLabel(name string, s scale) string {
	if s.unit == "" {
		return name
	}
	return name + " (" + s.unit + ")"
}

// maxAbs is the largest finite magnitude of values (0 for none).
func maxAbs(values ...[]float64) float64 {
	m := 0.0
	for _, vs := range values {
		for _, v := range vs {
			if finite(v) {
				m = math.Max(m, math.Abs(v))
			}
		}
	}
	return m
}

// sketch returns at most n evenly spaced order statistics of sorted (including its
// minimum and maximum), or sorted itself when it is short enough.
func sketch(sorted []float64, n int) []float64 {
	if len(sorted) <= n {
		return sorted
	}
	out := make([]float64, n)
	for i := range n {
		out[i] = sorted[int(math.Round(float64(i)*float64(len(sorted)-1)/float64(n-1)))]
	}
	return out
}

// sortedFinite returns a sorted copy of the finite values.
func sortedFinite(values []float64) []float64 {
	out := make([]float64, 0, len(values))
	for _, v := range values {
		if finite(v) {
			out = append(out, v)
		}
	}
	slices.Sort(out)
	return out
}

// median of sorted values (NaN for none).
func median(sorted []float64) float64 {
	n := len(sorted)
	if n == 0 {
		return math.NaN()
	}
	if n%2 == 1 {
		return sorted[n/2]
	}
	return (sorted[n/2-1] + sorted[n/2]) / 2
}

// quantile is the empirical q-quantile of sorted values, interpolated between order
// statistics (NaN for none); used only to draw bands, never in tables.
func quantile(sorted []float64, q float64) float64 {
	n := len(sorted)
	if n == 0 {
		return math.NaN()
	}
	pos := q * float64(n-1)
	lo := int(math.Floor(pos))
	hi := min(lo+1, n-1)
	return sorted[lo] + (pos-float64(lo))*(sorted[hi]-sorted[lo])
}

// sansFont is the typeface of every figure; gonum/plot embeds it, so figures look the
// same on every machine.
var sansFont = font.Font{Typeface: "Liberation", Variant: "Sans"}

// newPlot returns a plot with a title, axis labels, a light grid and sans-serif text.
func newPlot(title, xLabel, yLabel string) *plot.Plot {
	p := plot.New()
	p.Title.Text = title
	p.X.Label.Text = xLabel
	p.Y.Label.Text = yLabel
	for _, st := range []struct {
		f    *font.Font
		size vg.Length
	}{
		{&p.Title.TextStyle.Font, 14}, {&p.X.Label.TextStyle.Font, 12.5}, {&p.Y.Label.TextStyle.Font, 12.5},
		{&p.X.Tick.Label.Font, 11}, {&p.Y.Tick.Label.Font, 11}, {&p.Legend.TextStyle.Font, 11},
	} {
		*st.f = font.From(sansFont, st.size)
	}
	p.Title.Padding = vg.Points(6)
	p.Legend.Top = true
	p.Legend.ThumbnailWidth = vg.Points(18)
	p.X.Tick.Marker = linTicks{}
	p.Y.Tick.Marker = linTicks{}
	g := plotter.NewGrid()
	g.Vertical.Color = color.Gray{0xe0}
	g.Horizontal.Color = color.Gray{0xe0}
	p.Add(g)
	return p
}

// render draws p as PNG and SVG, its legend in a column right of the plot (so that it
// never covers data or the phase shading) and footer, small, along the bottom edge.
func render(p *plot.Plot, footer string) (pngData, svgData []byte, err error) {
	defer func() {
		// gonum/plot panics on some degenerate input; a figure must never take the report
		// down with it.
		if r := recover(); r != nil {
			err = fmt.Errorf("render: %v", r)
		}
	}()
	leg := p.Legend
	p.Legend = plot.NewLegend()
	defer func() { p.Legend = leg }()
	leg.Left, leg.Top, leg.XOffs, leg.YOffs, leg.Padding = true, true, 0, 0, vg.Points(1.5)
	legW := leg.Rectangle(draw.Canvas{}).Size().X
	if legW > 0 {
		legW += legendGap
	}
	w := figWidth + legW
	drawAll := func(c draw.Canvas) {
		body := draw.Crop(c, 0, 0, footerHeight, 0)
		p.Draw(draw.Crop(body, 0, -legW, 0, 0))
		if legW > 0 {
			top := p.Title.TextStyle.Rectangle(p.Title.Text).Size().Y + p.Title.Padding
			leg.Draw(draw.Crop(body, body.Size().X-legW+legendGap/2, 0, 0, -top))
		}
		if footer != "" {
			st := p.X.Tick.Label
			st.Font = font.From(sansFont, 7.5)
			st.Color = color.Gray{0x77}
			st.XAlign, st.YAlign = draw.XRight, draw.YBottom
			c.FillText(st, vg.Point{X: c.Max.X - vg.Points(4), Y: c.Min.Y + vg.Points(2)}, footer)
		}
	}
	img := vgimg.NewWith(vgimg.UseWH(w, figHeight), vgimg.UseDPI(pngDPI), vgimg.UseBackgroundColor(color.White))
	drawAll(draw.New(img))
	var pb bytes.Buffer
	if _, err := (vgimg.PngCanvas{Canvas: img}).WriteTo(&pb); err != nil {
		return nil, nil, fmt.Errorf("encode png: %w", err)
	}
	sv := vgsvg.New(w, figHeight)
	drawAll(draw.New(sv))
	var sb bytes.Buffer
	if _, err := sv.WriteTo(&sb); err != nil {
		return nil, nil, fmt.Errorf("encode svg: %w", err)
	}
	return pb.Bytes(), sb.Bytes(), nil
}

// legendGap is the space left and right of the legend column; footerHeight the strip
// along the bottom that holds the footer.
const (
	legendGap    = 12 * vg.Millimeter / 2
	footerHeight = 11 * vg.Millimeter / 3
)

// figureFooter is the line every figure carries: what made it, from meta.json.
func figureFooter(m *Meta) string {
	if m == nil {
		return "edgebpf · meta.json missing"
	}
	s := "edgebpf"
	if m.Version != "" {
		s += " " + m.Version
	}
	if c := shortCommit(m.Commit); c != "" {
		s += " (" + c + ")"
	}
	if m.Profile != "" {
		s += " · profile " + m.Profile
	}
	if !m.Started.IsZero() {
		s += " · " + m.Started.UTC().Format("2006-01-02 15:04 UTC")
	}
	return s
}

// plural is "1 run", "2 runs".
func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return strconv.Itoa(n) + " " + noun + "s"
}

// withAlpha returns c with opacity a (0..1), premultiplied as image/color expects.
func withAlpha(c color.RGBA, a float64) color.NRGBA {
	return color.NRGBA{c.R, c.G, c.B, uint8(math.Round(a * 255))}
}

// lineStyle is a solid line of the data plane's colour.
func lineStyle(c color.Color, width float64) draw.LineStyle {
	return draw.LineStyle{Color: c, Width: vg.Points(width)}
}

// niceTicks labels a log axis at 1, 2 and 5 times powers of ten, with unlabelled minor
// ticks in between, so that rates read as 1, 10, 50, 100, 500, 1000 Mbit/s.
type niceTicks struct{}

func (niceTicks) Ticks(lo, hi float64) []plot.Tick {
	if !(lo > 0) || !(hi > lo) {
		return plot.DefaultTicks{}.Ticks(lo, hi)
	}
	var ticks []plot.Tick
	for e := math.Floor(math.Log10(lo)); math.Pow(10, e) <= hi*1.0001; e++ {
		base := math.Pow(10, e)
		for m := 1; m <= 9; m++ {
			v := float64(m) * base
			if v < lo*0.9999 || v > hi*1.0001 {
				continue
			}
			t := plot.Tick{Value: v}
			if m == 1 || m == 2 || m == 5 {
				t.Label = strconv.FormatFloat(v, 'g', -1, 64)
			}
			ticks = append(ticks, t)
		}
	}
	if len(ticks) < 2 {
		return plot.DefaultTicks{}.Ticks(lo, hi)
	}
	return ticks
}

// linTicks labels a linear axis at about eight round values (1, 2 or 5 times a power of
// ten apart) with as many decimals as the step needs, and puts four minor ticks between.
// gonum's default ticks can print one label several times when the range is narrow.
type linTicks struct{}

func (linTicks) Ticks(lo, hi float64) []plot.Tick {
	if !finite(lo) || !finite(hi) || hi <= lo {
		return plot.DefaultTicks{}.Ticks(lo, hi)
	}
	raw := (hi - lo) / 8
	mag := math.Pow(10, math.Floor(math.Log10(raw)))
	step := mag
	for _, m := range []float64{1, 2, 5, 10} {
		if m*mag >= raw {
			step = m * mag
			break
		}
	}
	dec := max(0, int(-math.Floor(math.Log10(step)+1e-9)))
	minor := step / 5
	if step/mag == 2 {
		minor = step / 4
	}
	var ticks []plot.Tick
	first := math.Ceil(lo/minor - 1e-9)
	for i := 0.0; ; i++ {
		v := (first + i) * minor
		if v > hi+minor*1e-6 {
			break
		}
		if math.Abs(v) < minor*1e-6 {
			v = 0 // no "-0.0"
		}
		t := plot.Tick{Value: v}
		if r := math.Abs(math.Remainder(v, step)); r < minor*1e-3 {
			t.Label = strconv.FormatFloat(v, 'f', dec, 64)
		}
		ticks = append(ticks, t)
		if len(ticks) > 200 {
			break
		}
	}
	return ticks
}

// xyLine returns a line through the points, or nil when none is finite.
func xyLine(xs, ys []float64) plotter.XYs {
	var out plotter.XYs
	for i := range xs {
		if finite(xs[i]) && finite(ys[i]) {
			out = append(out, plotter.XY{X: xs[i], Y: ys[i]})
		}
	}
	return out
}

// seriesGlyph and seriesDashes tell the series of one figure apart where they overlap (the
// speed-limit configurations mixed and ebpf often lie on top of each other): the i-th
// series gets the i-th shape and dash pattern as well as its colour.
func seriesGlyph(i int) draw.GlyphDrawer {
	glyphs := []draw.GlyphDrawer{draw.CircleGlyph{}, draw.TriangleGlyph{}, draw.BoxGlyph{}, draw.PyramidGlyph{}, draw.RingGlyph{}, draw.CrossGlyph{}}
	return glyphs[i%len(glyphs)]
}

// seriesDashes never returns a fine dotted pattern: that is the theses' (thesisDashes).
func seriesDashes(i int) []vg.Length {
	switch i % 4 {
	case 1:
		return []vg.Length{vg.Points(6), vg.Points(3)}
	case 2:
		return []vg.Length{vg.Points(7), vg.Points(2), vg.Points(2), vg.Points(2)}
	case 3:
		return []vg.Length{vg.Points(12), vg.Points(3)}
	}
	return nil
}

// logIfWide makes a linear axis logarithmic when its positive range spans more than
// thirty times: a thesis value twenty times ours then stays on the figure without
// squeezing ours into a corner, and equal ratios read as equal distances.
func logIfWide(a *plot.Axis) bool {
	if _, ok := a.Scale.(plot.LogScale); ok {
		return true
	}
	if !(a.Min > 0) || a.Max/a.Min <= 30 {
		return false
	}
	a.Scale = plot.LogScale{}
	a.Tick.Marker = niceTicks{}
	a.Min, a.Max = a.Min/1.3, a.Max*1.3
	return true
}
