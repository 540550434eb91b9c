package reports

import (
	"strconv"
	"strings"
)

// The theses' own numbers, in one place: the tables print them as the theses did and the
// figures draw them as reference lines and markers labelled "thesis". Values are in base
// units (seconds, bit/s, percent, count); each carries the scale the thesis printed it in.
// Sources: Riegel 2024 §4 and Table 5.1; Weinhold 2023 Tables 5.4 - 5.6
// (reference.md §3 and §4).

// riegelThesis is one row of Riegel's Table 5.1: the means of the original (user-space)
// proxy and the eBPF proxy, and the improvement the thesis stated.
type riegelThesis struct {
	exp, metric, x  string
	userspace, ebpf float64 // means, base units
	improvement     float64 // percent, as printed
	sc              scale   // how the thesis printed the two means
}

var riegel51 = []riegelThesis{
	{expLatency, "rtt", "", 4.66e-3, 4.14e-3, 11.16, scale{1e3, "ms", 2}},
	{expJitter, "jitter", "", 0.0326e-3, 0.0082e-3, 74.85, scale{1e3, "ms", 4}},
	{expThroughput, "throughput", "", 0.26e9, 21.2e9, 8053.85, scale{1e-9, "Gbit/s", 2}},
	{expResources, "cpu", "load", 20.19, 5.39, 73.30, scale{1, "%", 2}},
}

// riegelLinkLimit is the hardware limit Riegel's throughput figure (Fig. 4.3) marks: what
// the xl170's path could carry, the counterpart of our direct data plane.
const riegelLinkLimit = 34.2e9

// riegelBottleneckLoss is the loss of the user-space proxy at the rates Riegel's text
// names (§4.4.1, Fig. 4.4); the sweep was not run for the eBPF proxy.
var riegelBottleneckLoss = []struct{ rate, loss float64 }{{250e6, 1.6}, {500e6, 45}}

// riegelFor returns the thesis row of a measurement of Table 5.1.
func riegelFor(exp, metric, x string) (riegelThesis, bool) {
	for _, r := range riegel51 {
		if r.exp == exp && r.metric == metric && r.x == x {
			return r, true
		}
	}
	return riegelThesis{}, false
}

// mean returns the thesis's mean for a data plane: the user-space proxy's or the eBPF
// proxy's (the thesis measured no other).
func (r riegelThesis) mean(dp string) (float64, bool) {
	switch dp {
	case "userspace":
		return r.userspace, true
	case "ebpf":
		return r.ebpf, true
	}
	return 0, false
}

// cells are the table's thesis columns: user space, eBPF, improvement.
func (r riegelThesis) cells() []string {
	return []string{r.sc.withUnit(r.userspace), r.sc.withUnit(r.ebpf), scale{1, "%", 2}.withUnit(r.improvement)}
}

// riegelCells are the thesis columns of a Table 5.1 row, dashes where the thesis has none.
func riegelCells(exp, metric, x string) []string {
	if r, ok := riegelFor(exp, metric, x); ok {
		return r.cells()
	}
	return []string{"–", "–", "–"}
}

func thesisBottleneck(dp string) string {
	if dp != "userspace" {
		return "not measured"
	}
	return "knee near 250 Mbit/s: " + thesisBottleneckLoss()
}

// thesisBottleneckLoss is "loss 1.6 % at 250, 45 % at 500 Mbit/s".
func thesisBottleneckLoss() string {
	var parts []string
	for _, p := range riegelBottleneckLoss {
		parts = append(parts, scale{1, "%", -1}.withUnit(p.loss)+" at "+strconv.FormatFloat(p.rate/1e6, 'g', -1, 64))
	}
	return "loss " + strings.Join(parts, ", ") + " Mbit/s"
}

// thesisFigures holds the thesis's own row of a Weinhold table, in base units, with the
// scale it printed them in and its speed-up; values[0] is the median.
type thesisFigures struct {
	values  []float64
	sc      scale
	speedup string
}

// text prints the values as the thesis did: "1.8868 / 1.6026 / 2.3739 / 0.1608 ms".
func (f thesisFigures) text() string {
	parts := make([]string, len(f.values))
	for i, v := range f.values {
		parts[i] = f.sc.format(v)
	}
	s := strings.Join(parts, " / ")
	if f.sc.unit != "" {
		s += " " + f.sc.unit
	}
	return s
}

var (
	ms4 = scale{1e3, "ms", 4}
	// thesis54 is Weinhold's Table 5.4: median / min / max / stddev of the time per
	// request of one execution of 120 clients × 10,000 requests.
	thesis54 = map[string]thesisFigures{
		"userspace": {[]float64{1.8868e-3, 1.6026e-3, 2.3739e-3, 0.1608e-3}, ms4, "baseline"},
		"mixed":     {[]float64{1.0784e-3, 0.8896e-3, 1.2826e-3, 0.0878e-3}, ms4, "1.75×"},
		"ebpf":      {[]float64{1.3252e-3, 1.1492e-3, 1.5487e-3, 0.0818e-3}, ms4, "1.42×"},
	}
	// thesis55 is Table 5.5: median / mean / stddev over 96 executions of the median time
	// per request.
	thesis55 = map[string]thesisFigures{
		"userspace": {[]float64{1.7476e-3, 1.7514e-3, 0.0187e-3}, ms4, "baseline"},
		"mixed":     {[]float64{1.2010e-3, 1.2011e-3, 0.0111e-3}, ms4, "1.46× (text: 1.76×)"},
		"ebpf":      {[]float64{1.2654e-3, 1.2638e-3, 0.0113e-3}, ms4, "1.38× (text: 1.43×)"},
	}
	// thesis56 is Table 5.6: median / mean / min / max of the clients until the first drop.
	thesis56 = map[string]thesisFigures{
		"userspace": {[]float64{139, 139.5, 127, 161}, scale{1, "", -1}, "baseline"},
		"mixed":     {[]float64{265, 269.6, 256, 300}, scale{1, "", -1}, "1.91× (text, on means: 1.93×)"},
		"ebpf":      {[]float64{270, 271.7, 256, 297}, scale{1, "", -1}, "1.94× (text, on means: 1.95×)"},
	}
)

func thesisCells(m map[string]thesisFigures, dp string) []string {
	if f, ok := m[dp]; ok {
		return []string{f.text(), f.speedup}
	}
	return []string{"–", "–"}
}

// thesisMedian is the median of a Weinhold table for a configuration.
func thesisMedian(m map[string]thesisFigures, dp string) (float64, bool) {
	f, ok := m[dp]
	if !ok || len(f.values) == 0 {
		return 0, false
	}
	return f.values[0], true
}
