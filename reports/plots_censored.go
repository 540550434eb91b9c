package reports

import (
	"image/color"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"

	"github.com/edgebpf/edgebpf/stats"
)

// markCensored draws, on the drop-point box figure p, an open upward triangle at every
// repetition whose search found no drop up to its cap (drop_censored 1): its value is a lower
// bound (≥), not a measured drop point. dps and values are what the box figure drew, in its
// order (a data plane without values has no box). It says whether any was drawn.
func markCensored(ds *Dataset, p *plot.Plot, dps []string, values map[string][]float64) bool {
	var all [][]float64
	for _, dp := range dps {
		all = append(all, sortedFinite(values[dp]))
	}
	sc := scaleFor(stats.DropPoint.Unit, maxAbs(all...))
	var pts plotter.XYs
	i := 0
	for _, dp := range dps {
		if len(sortedFinite(values[dp])) == 0 {
			continue
		}
		censored := map[int]bool{}
		ds.rows(expSLDropPoint, dp, stats.DropCensored.Name, func(r *Row) { censored[r.Rep] = r.Value == 1 })
		ds.rows(expSLDropPoint, dp, stats.DropPoint.Name, func(r *Row) {
			if censored[r.Rep] && finite(r.Value) {
				pts = append(pts, plotter.XY{X: float64(i) + 0.3, Y: sc.of(r.Value)})
			}
		})
		i++
	}
	if len(pts) == 0 {
		return false
	}
	s, err := plotter.NewScatter(pts)
	if err != nil {
		return false
	}
	s.Shape, s.Radius, s.Color = draw.TriangleGlyph{}, vg.Points(5), color.Black
	p.Add(s)
	p.Legend.Add("≥ cap: no drop up to the search's cap (censored)", s)
	p.Legend.Top = true
	// Room above the highest value for the legend, so that it covers no box.
	top := 0.0
	for _, pt := range pts {
		top = max(top, pt.Y)
	}
	p.Y.Min, p.Y.Max = 0, max(p.Y.Max, top*1.3)
	return true
}
