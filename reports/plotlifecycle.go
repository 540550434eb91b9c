package reports

import (
	"image/color"
	"slices"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/font"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
)

// The lifecycle events of the resources experiment (bench.EventDeploy, bench.EventUndeploy):
// the x of its lifecycle samples, whose t is the moment the services were deployed or removed.
const (
	metricLifecycle = "lifecycle"
	eventDeploy     = "deploy"
	eventUndeploy   = "undeploy"
)

// lifecycleDashes tell the deploy and undeploy markers from the thesis's dotted levels.
var lifecycleDashes = []vg.Length{vg.Points(5), vg.Points(2), vg.Points(1), vg.Points(2)}

// lifecycleMoments returns the moments of dp's deploys and undeploys in the resources
// experiment, one per repetition, sorted, by event.
func lifecycleMoments(ds *Dataset, dp string) map[string][]float64 {
	out := map[string][]float64{}
	ds.rows(expResources, dp, metricLifecycle, func(r *Row) {
		if (r.X == eventDeploy || r.X == eventUndeploy) && finite(r.T) {
			out[r.X] = append(out[r.X], r.T)
		}
	})
	for _, ts := range out {
		slices.Sort(ts)
	}
	return out
}

// markLifecycle draws a vertical marker from ymin to ymax at the moments the services of dps
// were deployed and undeployed, labels them at the top and adds one legend entry; it says
// whether there was anything to mark. With one data plane it marks every repetition's moment
// in dark grey; with several, each data plane's median moment in its colour.
func markLifecycle(ds *Dataset, p *plot.Plot, dps []string, ymin, ymax float64) bool {
	var first *plotter.Line
	labels := map[string][]float64{}
	for _, dp := range dps {
		var c color.Color = ds.Subjects.Colour(dp)
		for _, ev := range []string{eventDeploy, eventUndeploy} {
			ts := lifecycleMoments(ds, dp)[ev]
			if len(ts) == 0 {
				continue
			}
			labels[ev] = append(labels[ev], ts...)
			if len(dps) > 1 {
				ts = []float64{median(ts)}
			} else {
				c = color.Gray{0x30}
			}
			for _, t := range ts {
				l, err := plotter.NewLine(plotter.XYs{{X: t, Y: ymin}, {X: t, Y: ymax}})
				if err != nil {
					continue
				}
				l.LineStyle = draw.LineStyle{Color: c, Width: vg.Points(1.1), Dashes: lifecycleDashes}
				p.Add(l)
				if first == nil {
					first = l
				}
			}
		}
	}
	if first == nil {
		return false
	}
	var xys plotter.XYs
	var texts []string
	for _, ev := range []string{eventDeploy, eventUndeploy} {
		if ts := labels[ev]; len(ts) > 0 {
			slices.Sort(ts)
			xys = append(xys, plotter.XY{X: median(ts), Y: ymax - (ymax-ymin)*0.04})
			texts = append(texts, ev)
		}
	}
	if lb, err := plotter.NewLabels(plotter.XYLabels{XYs: xys, Labels: texts}); err == nil {
		lb.Offset = vg.Point{X: vg.Points(3)}
		for i := range lb.TextStyle {
			lb.TextStyle[i].Font = font.From(sansFont, 8)
			lb.TextStyle[i].Color = color.Gray{0x30}
		}
		p.Add(lb)
	}
	p.Legend.Add("services deployed / removed", first)
	return true
}

// lifecycleNote ends the caption of a figure markLifecycle marked.
const lifecycleNote = " Dash-dotted: the moments the client and server services were deployed (start of Load) and removed (start of Cleanup), as in the thesis."
