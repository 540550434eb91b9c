package reports

import (
	_ "embed"
	"encoding/csv"
	"fmt"
	"strconv"
	"strings"

	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
)

// speedLimitCurveCSV is Weinhold's Fig. 5.2 as data: for every car count, the thesis's
// float formula (eq. 5.1) and the eBPF-only program's fixed-point answer. The report does
// not run BPF: workloads/speedlimit's TestCurveRecordedForTheReport runs the program
// through BPF_PROG_TEST_RUN once per count and fails when its answers differ from this
// file (-update-curve rewrites it).
//
//go:embed data/speedlimit-curve.csv
var speedLimitCurveCSV string

// curveRow is one car count of the speed-limit curve.
type curveRow struct {
	cars            int
	formula, kernel float64
}

// speedLimitCurve parses the recorded curve.
func speedLimitCurve() ([]curveRow, error) {
	recs, err := csv.NewReader(strings.NewReader(speedLimitCurveCSV)).ReadAll()
	if err != nil {
		return nil, fmt.Errorf("read the recorded speed-limit curve: %w", err)
	}
	if len(recs) < 2 || strings.Join(recs[0], ",") != "cars,formula_kmh,kernel_kmh" {
		return nil, fmt.Errorf("read the recorded speed-limit curve: want the header cars,formula_kmh,kernel_kmh and rows")
	}
	out := make([]curveRow, 0, len(recs)-1)
	for i, r := range recs[1:] {
		c, err1 := strconv.Atoi(r[0])
		f, err2 := strconv.ParseFloat(r[1], 64)
		k, err3 := strconv.ParseFloat(r[2], 64)
		if err1 != nil || err2 != nil || err3 != nil {
			return nil, fmt.Errorf("read the recorded speed-limit curve: line %d is not three numbers", i+2)
		}
		out = append(out, curveRow{c, f, k})
	}
	return out, nil
}

// speedlimitCurve draws Weinhold's Fig. 5.2 when a speed-limit experiment ran: the limit
// over the car count, the thesis's formula beside the eBPF-only program's answers and the
// thesis prototype's step (its integer division made the cosine vanish).
func speedlimitCurve(ds *Dataset) []figureSpec {
	const name, title, source = "speedlimit-curve", "Speed limit over the number of cars", "Weinhold Fig. 5.2"
	ran := false
	for _, exp := range []string{expSLResponse, expSLDropPoint, expSLScaling, expSLLoad} {
		ran = ran || len(ds.dataPlanes(exp)) > 0
	}
	if !ran {
		return []figureSpec{skipped(name, title, source, "no speed-limit experiment in this run")}
	}
	rows, err := speedLimitCurve()
	if err != nil {
		return []figureSpec{skipped(name, title, source, err.Error())}
	}
	var formula, kernel, proto plotter.XYs
	for _, r := range rows {
		formula = append(formula, plotter.XY{X: float64(r.cars), Y: r.formula})
		kernel = append(kernel, plotter.XY{X: float64(r.cars), Y: r.kernel})
		step := 120.0
		if r.cars >= 100 {
			step = 30
		}
		proto = append(proto, plotter.XY{X: float64(r.cars), Y: step})
	}
	p := newPlot(title, "cars in range", "speed limit (km/h)")
	p.Y.Min, p.Y.Max = 0, 130
	if l, err := plotter.NewLine(proto); err == nil {
		l.LineStyle = draw.LineStyle{Color: withAlpha(ds.Subjects.Colour("userspace"), 0.7), Width: vg.Points(1.4), Dashes: []vg.Length{vg.Points(6), vg.Points(3)}}
		l.StepStyle = plotter.PostStep
		p.Add(l)
		p.Legend.Add("thesis prototype's eBPF-only (integer division)", l)
	}
	if l, err := plotter.NewLine(formula); err == nil {
		l.LineStyle = lineStyle(withAlpha(ds.Subjects.Colour("direct"), 0.9), 1.6)
		p.Add(l)
		p.Legend.Add("thesis: eq. 5.1 in floating point", l)
	}
	if sp, err := plotter.NewScatter(kernel); err == nil {
		sp.Shape, sp.Color, sp.Radius = draw.CircleGlyph{}, ds.Subjects.Colour("ebpf"), vg.Points(1.6)
		p.Add(sp)
		p.Legend.Add("ours: the eBPF-only program, fixed point, rounded", sp)
	}
	return []figureSpec{{name: name, title: title, source: source, p: p,
		caption: "The speed limit the server answers for each number of cars in range: the thesis's eq. 5.1 (line), the whole km/h our eBPF-only XDP program computes in fixed point in the kernel (points; recorded by running the program through BPF_PROG_TEST_RUN in workloads/speedlimit's TestCurveRecordedForTheReport, which fails when the program's answers change, not measured in this run), and the thesis prototype's eBPF-only answer, whose integer division made it a step from 120 to 30 km/h (dashed)."}}
}
