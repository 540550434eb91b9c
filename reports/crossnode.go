package reports

import (
	"fmt"
	"slices"
	"strings"
)

// CrossNodeSuffix ends the name of an experiment measured across the workers of a cluster
// (`edgebpf run --topology cross-node`): its rows are latency@cross-node, never latency, so
// same-node and cross-node rows stay apart in raw/, summary.json and compare.
const CrossNodeSuffix = "@cross-node"

// crossNodeView returns the dataset's cross-node rows and summaries under their experiments'
// plain names, so that the same-node tables and figures can be built from them; nil when the
// dataset has none.
func (ds *Dataset) crossNodeView() *Dataset {
	v := &Dataset{Dir: ds.Dir, Meta: ds.Meta, Subjects: ds.Subjects}
	for _, r := range ds.Rows {
		if base, ok := strings.CutSuffix(r.Experiment, CrossNodeSuffix); ok {
			r.Experiment = base
			v.Rows = append(v.Rows, r)
		}
	}
	if len(v.Rows) == 0 {
		return nil
	}
	for _, e := range ds.Entries {
		if base, ok := strings.CutSuffix(e.Experiment, CrossNodeSuffix); ok {
			e.Experiment = base
			v.Entries = append(v.Entries, e)
		}
	}
	v.buildIndex()
	return v
}

// clusterText describes the run's clusters from meta.json: workers, placement and shaping.
func clusterText(m *Meta) string {
	if m == nil || !slices.Contains(strings.Split(fmt.Sprint(m.Topology["kind"]), ","), "cross-node") {
		return "a cluster of emulated workers joined by an underlay"
	}
	t := m.Topology
	s := fmt.Sprintf("a cluster of %v emulated workers joined by an underlay (MTU %v, overlay %v, %v)", t["workers"], t["underlay_mtu"], t["overlay_mtu"], t["underlay_shaping"])
	if p, ok := t["placement"].(map[string]any); ok {
		s += fmt.Sprintf(", client on worker %v, server on worker %v", p["client"], p["server"])
	}
	return s
}

// crossNodeNote ends every cross-node table and figure caption.
const crossNodeNote = " A mixed subject A+B runs A on worker 0 and B on worker 1. The thesis's values, where shown, are its single-node figures: the thesis measured one worker only."

// crossNodeRiegel is Riegel's Table 5.1 with the rows measured across workers.
func crossNodeRiegel(ds *Dataset) *Table {
	v := ds.crossNodeView()
	if v == nil {
		return nil
	}
	t := riegelTable(v)
	if t == nil {
		return nil
	}
	t.ID, t.Title = "riegel-5-1-cross-node", "Riegel 2024, Table 5.1 across workers (cross-node)"
	t.Intro = "The rows of Table 5.1 measured on " + clusterText(ds.Meta) + ": this run's median per data plane with its 95 % confidence interval [lo, hi] and number of samples n." + crossNodeNote
	return t
}

// crossNodeLossFree is the bottleneck's highest loss-free rate across workers.
func crossNodeLossFree(ds *Dataset) *Table {
	v := ds.crossNodeView()
	if v == nil {
		return nil
	}
	t := lossFreeTable(v)
	if t == nil {
		return nil
	}
	t.ID, t.Title = "bottleneck-loss-free-cross-node", t.Title+" across workers (cross-node)"
	t.Intro += " Measured on " + clusterText(ds.Meta) + "."
	return t
}

// crossingCost sets, per data plane, each Table 5.1 measurement across workers beside the
// same measurement on one node, when the results hold both.
func crossingCost(ds *Dataset) *Table {
	v := ds.crossNodeView()
	if v == nil {
		return nil
	}
	// A data plane's column: those measured both ways; a row: measurements with a cell.
	cell := func(r riegelRow, dp string) (string, bool) {
		same, sok := ds.entry(r.exp, dp, r.metric, r.x)
		cross, cok := v.entry(r.exp, dp, r.metric, r.x)
		if !sok || !cok || same.N == 0 || cross.N == 0 || same.Median == 0 {
			return "–", false
		}
		return fmt.Sprintf("%.2f× (%s → %s)", cross.Median/same.Median, FormatValue(same.Median, same.Unit), FormatValue(cross.Median, cross.Unit)), true
	}
	var dps []string
	for _, dp := range v.dataPlanes("*") {
		if slices.ContainsFunc(riegelRows, func(r riegelRow) bool { _, ok := cell(r, dp); return ok }) {
			dps = append(dps, dp)
		}
	}
	t := &Table{ID: "crossing-cost", Title: "What crossing workers costs",
		Intro:  "Per data plane, the median across workers divided by the median on one node, from the same results directory (on one node → across workers); above 1 means larger across workers (for throughput: faster).",
		Header: append([]string{"measurement"}, dps...)}
	for _, r := range riegelRows {
		row := []string{r.label}
		filled := false
		for _, dp := range dps {
			c, ok := cell(r, dp)
			filled = filled || ok
			row = append(row, c)
		}
		if filled {
			t.Rows = append(t.Rows, row)
		}
	}
	if len(t.Rows) == 0 {
		return nil
	}
	return t
}

// crossNodeBuilders are the Riegel figures, drawn again from the cross-node rows.
var crossNodeBuilders = []func(*Dataset) []figureSpec{
	latencyCDF, jitterBox, jitterCDF, throughputBox, throughputTime,
	bottleneckOWD, bottleneckLoss, bottleneckRates, bottleneckCPUPerPacket,
	cpuPerDataPlane, cpuCompare, ramTime, cpuPerGbit, bpfCost,
}

// crossNodeFigures builds the Riegel figures from the cross-node rows, named <figure>-cross-
// node, with the data planes and mixed subjects as series; none when the run has no
// cross-node rows.
func crossNodeFigures(ds *Dataset) []figureSpec {
	v := ds.crossNodeView()
	if v == nil {
		return nil
	}
	var out []figureSpec
	for _, b := range crossNodeBuilders {
		for _, s := range b(v) {
			s.name += "-cross-node"
			s.title += " (cross-node)"
			if s.p != nil {
				s.p.Title.Text += " (cross-node)"
				s.caption += " Across workers: " + clusterText(ds.Meta) + "." + crossNodeNote
			} else {
				s.skip += " across workers"
			}
			out = append(out, s)
		}
	}
	return out
}
