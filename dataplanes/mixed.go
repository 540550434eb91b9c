package dataplanes

import (
	"fmt"
	"slices"
	"strings"

	"github.com/edgebpf/edgebpf/internal/features"
	"github.com/edgebpf/edgebpf/subject"
)

// MixedSep joins the data planes of a mixed subject's workers in its name: "ebpf+userspace"
// runs ebpf on worker 0 and userspace on worker 1.
const MixedSep = "+"

// Mixed is a subject of a cluster that runs a different data plane on each worker (Riegel's
// Compatibility requirement: eBPF and non-eBPF workers in one cluster). Workers names the
// data plane of worker 0, 1, ...; workers beyond the list run its last one. It exists only
// across workers: on one node there is one data plane.
type Mixed struct {
	subject.Spec
	Workers []string
}

// IsMixed says whether name names a mixed subject (data planes joined by MixedSep).
func IsMixed(name string) bool { return strings.Contains(name, MixedSep) }

// Plane returns the spec of worker i's data plane.
func (m Mixed) Plane(r Registry, i int) Spec {
	s, _ := r.Lookup(m.Workers[min(i, len(m.Workers)-1)])
	return s
}

// Mixed resolves a mixed subject's name: every part must be a data plane of r, and at least
// two must differ. A name that known lists takes that spec's description, colour and order;
// any other combination is as valid, with a generic description. Its needs are every part's.
func (r Registry) Mixed(name string, known []Mixed) (Mixed, error) {
	parts := strings.Split(name, MixedSep)
	var needs []features.Name
	for _, p := range parts {
		s, err := r.Lookup(p)
		if err != nil {
			return Mixed{}, fmt.Errorf("mixed subject %q: %w", name, err)
		}
		for _, n := range s.Needs {
			if !slices.Contains(needs, n) {
				needs = append(needs, n)
			}
		}
	}
	if allSame(parts) {
		return Mixed{}, fmt.Errorf("mixed subject %q runs %s on every worker: select %s instead", name, parts[0], parts[0])
	}
	m := Mixed{Workers: parts, Spec: subject.Spec{
		Kind: subject.DataPlane, Name: name, Order: 25,
		Description: "a data plane per worker: " + describeWorkers(parts),
	}}
	if i := slices.IndexFunc(known, func(k Mixed) bool { return k.Name == name }); i >= 0 {
		m.Spec = known[i].Spec
	}
	m.Needs = needs
	return m, nil
}

func allSame(parts []string) bool {
	for _, p := range parts[1:] {
		if p != parts[0] {
			return false
		}
	}
	return true
}

// describeWorkers renders "worker 0 ebpf, worker 1 userspace".
func describeWorkers(parts []string) string {
	var b []string
	for i, p := range parts {
		b = append(b, fmt.Sprintf("worker %d %s", i, p))
	}
	return strings.Join(b, ", ")
}
