package reports

import (
	"fmt"

	"github.com/edgebpf/edgebpf/stats"
)

// relativeTo replaces s's series by their ratios to the reference data plane ref: every
// repetition's value (stats.AggregateOf) of a data plane other than ref is divided by ref's
// value of the same repetition of the same experiment, metric and x. The runner interleaves
// data planes (repetition r of each runs back to back on the same machine), so whatever
// slowed the machine during repetition r slowed both, and the ratio keeps what the data
// plane itself costs. ref's own series, series ref did not measure and repetitions whose
// reference value is 0 (a loss of 0) are left out.
func (s *cmpSide) relativeTo(ref, role string) error {
	groups := map[cmpKey]*cmpGroup{}
	var order []cmpKey
	found := false
	for _, k := range s.order {
		if k.dp == ref {
			found = true
			continue
		}
		rg, ok := s.groups[cmpKey{k.exp, ref, k.metric, k.x}]
		if !ok {
			continue
		}
		g, agg := s.groups[k], stats.AggregateOf(k.metric)
		refv := map[int]float64{}
		for _, r := range stats.RepValues(rg.reps, rg.values, agg) {
			refv[r.Rep] = r.Value
		}
		rel := &cmpGroup{unit: "× " + ref, xUnit: g.xUnit}
		for _, r := range stats.RepValues(g.reps, g.values, agg) {
			if d, ok := refv[r.Rep]; ok && d != 0 {
				rel.reps = append(rel.reps, r.Rep)
				rel.values = append(rel.values, r.Value/d)
			}
		}
		if len(rel.values) > 0 {
			groups[k] = rel
			order = append(order, k)
		}
	}
	if !found {
		return &InputError{fmt.Errorf("%s %s has no data plane %s to compare relative to: run it with --dataplane %s,... or compare without --relative-to", role, s.dir, ref, ref)}
	}
	s.groups, s.order = groups, order
	return nil
}
