package stats

import (
	"cmp"
	"fmt"
	"slices"
	"strconv"
)

// Key identifies the samples that are summarised together: one metric at one point X of
// its curve. X is empty for a metric that is not a curve.
type Key struct {
	Metric Metric
	X      string
	XUnit  string
}

// Group holds the values of the samples that share a Key, in the order the samples came.
type Group struct {
	Key
	Values []float64
}

// GroupSamples groups samples by metric name and X, in a deterministic order: metrics in
// the order they first appear; within a metric, the group without X first, then the X
// values in ascending numeric order when every non-empty X of that metric parses as a
// float (so "500000000" comes after "50000000"), otherwise in the order they first
// appear.
//
// Samples that share a metric name must agree on its unit and better-direction, and
// those of a metric that set X must agree on XUnit; a disagreement is a bug in a meter
// and is returned as an error.
func GroupSamples(samples []Sample) ([]Group, error) {
	type metricGroups struct {
		metric    Metric
		first     int // index of the first sample of the metric
		xUnit     string
		xUnitFrom int // index of the first sample with an X, -1 if none
		groups    []*Group
		byX       map[string]*Group
	}
	var order []*metricGroups
	byName := make(map[string]*metricGroups)

	for i, s := range samples {
		m, ok := byName[s.Metric.Name]
		if !ok {
			m = &metricGroups{metric: s.Metric, first: i, xUnitFrom: -1, byX: make(map[string]*Group)}
			byName[s.Metric.Name] = m
			order = append(order, m)
		}
		if s.Metric != m.metric {
			return nil, fmt.Errorf("group samples: metric %q is %s (%s is better) in sample %d but %s (%s is better) in sample %d",
				s.Metric.Name, m.metric.Unit, m.metric.Better, m.first, s.Metric.Unit, s.Metric.Better, i)
		}
		if s.X != "" {
			if m.xUnitFrom < 0 {
				m.xUnit, m.xUnitFrom = s.XUnit, i
			} else if s.XUnit != m.xUnit {
				return nil, fmt.Errorf("group samples: metric %q has x unit %q in sample %d but %q in sample %d",
					s.Metric.Name, m.xUnit, m.xUnitFrom, s.XUnit, i)
			}
		}
		g, ok := m.byX[s.X]
		if !ok {
			g = &Group{Key: Key{Metric: s.Metric, X: s.X, XUnit: s.XUnit}}
			m.byX[s.X] = g
			m.groups = append(m.groups, g)
		}
		g.Values = append(g.Values, s.Value)
	}

	var out []Group
	for _, m := range order {
		sortGroups(m.groups)
		for _, g := range m.groups {
			out = append(out, *g)
		}
	}
	return out, nil
}

// sortGroups puts the group without X first, then sorts the others numerically by X if
// every X parses as a float, keeping the order of first appearance otherwise and among
// equal numbers.
func sortGroups(groups []*Group) {
	nums := make(map[*Group]float64, len(groups))
	numeric := true
	for _, g := range groups {
		if g.X == "" {
			continue
		}
		v, err := strconv.ParseFloat(g.X, 64)
		if err != nil {
			numeric = false
			break
		}
		nums[g] = v
	}
	slices.SortStableFunc(groups, func(a, b *Group) int {
		if aNone, bNone := a.X == "", b.X == ""; aNone != bNone {
			if aNone {
				return -1
			}
			return 1
		}
		if numeric {
			return cmp.Compare(nums[a], nums[b])
		}
		return 0
	})
}
