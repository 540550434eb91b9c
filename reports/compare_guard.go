package reports

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
)

// MismatchError says that two runs were made under configurations that make their numbers
// incomparable: a different profile, different parameters or placement of an experiment
// both ran, a different topology or results schema. CompareOptions.Force compares them anyway.
type MismatchError struct {
	// Differences name what differs, each as "what (baseline vs new run)".
	Differences []string
}

// Error says what differs and what to do, in one line.
func (e *MismatchError) Error() string {
	return "baseline and new run differ in " + strings.Join(e.Differences, "; ") +
		": compare runs of the same configuration, or compare anyway with --force"
}

// guard compares the metadata of two runs. differences make the runs incomparable (profile,
// parameters and placement of the experiments both ran, topology, results schema); warnings
// make the comparison less trustworthy (kernel, CPU model, core count, pinning, governor).
func guard(base, nw *Meta) (differences, warnings []string) {
	diff := func(list *[]string, what string, a, b any) {
		ja, jb := canonical(a), canonical(b)
		if ja != jb {
			*list = append(*list, fmt.Sprintf("%s (%s vs %s)", what, ja, jb))
		}
	}
	diff(&differences, "results schema", base.SchemaVersion(), nw.SchemaVersion())
	diff(&differences, "profile", base.Profile, nw.Profile)
	if bk, nk := topologyKind(base), topologyKind(nw); bk != nk {
		// Same-node and cross-node rows carry different experiment names and never pair
		// up; the guard says why instead of listing every key of the two descriptions.
		differences = append(differences, fmt.Sprintf("topology (%s vs %s)", bk, nk))
	} else {
		for _, k := range unionKeys(base.Topology, nw.Topology) {
			diff(&differences, "topology "+k, base.Topology[k], nw.Topology[k])
		}
	}
	// Parameters and placement of the experiments both ran, per (experiment, data plane);
	// an experiment whose parameters differ on several data planes alike is named once.
	// A placement (client and server pinned apart, or not) changes what a round trip
	// measures (two cross-CPU wake-ups or none), so it makes runs incomparable; other
	// CPU lists of the same placement only warn, as the run's pinning does.
	type ek struct{ name, dp string }
	bases := map[ek]ExperimentMeta{}
	for _, e := range base.Experiments {
		bases[ek{e.Name, e.DataPlane}] = e
	}
	for _, e := range nw.Experiments {
		be, ok := bases[ek{e.Name, e.DataPlane}]
		if !ok {
			continue
		}
		bp := be.Params
		var d, w []string
		diff(&d, e.Name+" placement", be.Placement, e.Placement)
		if be.Placement == e.Placement {
			diff(&w, e.Name+" pinning differs", be.Pinning, e.Pinning)
		}
		bm, bok := bp.(map[string]any)
		nm, nok := e.Params.(map[string]any)
		if bok && nok {
			for _, k := range unionKeys(bm, nm) {
				diff(&d, e.Name+" "+k, bm[k], nm[k])
			}
		} else {
			diff(&d, e.Name+" parameters", bp, e.Params)
		}
		for _, s := range d {
			if !slices.Contains(differences, s) {
				differences = append(differences, s)
			}
		}
		for _, s := range w {
			if !slices.Contains(warnings, s) {
				warnings = append(warnings, s)
			}
		}
	}

	diff(&warnings, "kernel differs", base.Host.Kernel, nw.Host.Kernel)
	diff(&warnings, "CPU model differs", base.Host.CPUModel, nw.Host.CPUModel)
	diff(&warnings, "core count differs", base.Host.Cores, nw.Host.Cores)
	diff(&warnings, "pinning differs", base.Pinning, nw.Pinning)
	diff(&warnings, "governor differs", base.Host.Governor, nw.Host.Governor)
	return differences, warnings
}

// topologyKind is a run's topology: its meta.json topology's kind, same-node without one
// (runs from before clusters).
func topologyKind(m *Meta) string {
	if k, ok := m.Topology["kind"].(string); ok && k != "" {
		return k
	}
	return "same-node"
}

// canonical renders v as compact JSON (maps with sorted keys) or, for a string, as itself;
// "none" when absent or empty.
func canonical(v any) string {
	if v == nil {
		return "none"
	}
	if s, ok := v.(string); ok {
		if s == "" {
			return "none"
		}
		return s
	}
	if m, ok := v.(map[string]string); ok && len(m) == 0 {
		return "none"
	}
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	s := string(b)
	if s == `""` || s == "null" {
		return "none"
	}
	return s
}

// unionKeys returns the keys of both maps, sorted.
func unionKeys(a, b map[string]any) []string {
	keys := slices.Collect(maps.Keys(a))
	for k := range b {
		if _, ok := a[k]; !ok {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	return keys
}
