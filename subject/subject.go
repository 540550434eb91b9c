// Package subject names what an experiment compares: its subjects. A subject is deployed on a
// worker node and measured side by side with the others of its kind: the data planes for the
// Riegel experiments (direct, userspace, ebpf, nftables), the speed-limit responder's
// configurations for the Weinhold ones (userspace, mixed, ebpf), later topologies.
//
// Every subject describes itself with a Spec that lives with its implementation (the data
// plane's or the workload's package); the registries that list the specs (dataplanes/builtin,
// workloads/speedlimit) are the only places that enumerate them. The runner, the feature
// check and the report read names, needs, colours and order from the specs, never from lists
// of strings of their own. The package is a leaf: it imports nothing of the project but the
// feature vocabulary, so that reports can take a Catalogue without knowing namespaces.
package subject

import (
	"cmp"
	"hash/fnv"
	"image/color"
	"slices"
	"time"

	"github.com/edgebpf/edgebpf/internal/features"
)

// Kind says what sort of subject a spec describes.
type Kind string

// The kinds of subject.
const (
	// DataPlane is a data plane: what carries traffic between a node's service instances.
	DataPlane Kind = "dataplane"
	// Responder is a configuration of a server workload that answers requests itself (the
	// speed-limit responder), deployed on a node that runs the direct data plane.
	Responder Kind = "responder"
)

// Spec describes one subject.
type Spec struct {
	Kind Kind
	// Name is the subject's name as users select it and as the results' dataplane column
	// carries it.
	Name string
	// Workload names the workload a Responder configures ("speedlimit"); empty for data
	// planes.
	Workload string
	// Description is one line for `edgebpf list` and the report.
	Description string
	// Needs lists what the machine must offer (package features); every subject also needs
	// a node (namespaces, a bridge, veths).
	Needs []features.Name
	// Colour is the subject's colour in every figure; Order its place in tables and figures
	// (lower first).
	Colour color.RGBA
	Order  int
}

// Key is the name meta.json records the subject's settings under: the name for a data plane,
// WORKLOAD/NAME for a responder configuration (whose names the data planes share).
func (s Spec) Key() string {
	if s.Workload != "" {
		return s.Workload + "/" + s.Name
	}
	return s.Name
}

// Catalogue is a set of specs, of one kind or several.
type Catalogue []Spec

// Names lists the catalogue's names in its order, without repeats.
func (c Catalogue) Names() []string {
	var out []string
	for _, s := range c.sorted() {
		if !slices.Contains(out, s.Name) {
			out = append(out, s.Name)
		}
	}
	return out
}

// Lookup finds a spec by name.
func (c Catalogue) Lookup(name string) (Spec, bool) {
	i := slices.IndexFunc(c, func(s Spec) bool { return s.Name == name })
	if i < 0 {
		return Spec{}, false
	}
	return c[i], true
}

func (c Catalogue) sorted() Catalogue {
	out := slices.Clone(c)
	slices.SortStableFunc(out, func(a, b Spec) int { return cmp.Compare(a.Order, b.Order) })
	return out
}

// fallback colours for subjects the catalogue does not know (results of another build), picked
// by a hash of the name so that a subject keeps its colour across figures and runs.
var fallback = []color.RGBA{
	{0xd6, 0x27, 0x28, 0xff}, {0x8c, 0x56, 0x4b, 0xff}, {0xe3, 0x77, 0xc2, 0xff},
	{0x17, 0xbe, 0xcf, 0xff}, {0xbc, 0xbd, 0x22, 0xff}, {0x39, 0x3b, 0x79, 0xff},
	{0x84, 0x3c, 0x39, 0xff}, {0x63, 0x79, 0x39, 0xff},
}

// Colour returns the colour of the named subject: its spec's, or a hash-picked one.
func (c Catalogue) Colour(name string) color.RGBA {
	if s, ok := c.Lookup(name); ok {
		return s.Colour
	}
	h := fnv.New32a()
	h.Write([]byte(name))
	return fallback[h.Sum32()%uint32(len(fallback))]
}

// Compare orders two names as tables and figures list them: by their specs' order, names
// the catalogue does not know last, by name.
func (c Catalogue) Compare(a, b string) int {
	rank := func(n string) int {
		if s, ok := c.Lookup(n); ok {
			return s.Order
		}
		return int(^uint(0) >> 1)
	}
	if r := cmp.Compare(rank(a), rank(b)); r != 0 {
		return r
	}
	return cmp.Compare(a, b)
}

// Sort sorts names with Compare.
func (c Catalogue) Sort(names []string) { slices.SortFunc(names, c.Compare) }

// ProgramRun is how often the kernel ran one of a subject's BPF programs and for how long in
// total, while the kernel's run-time statistics were on (bpf_stats_enabled).
type ProgramRun struct {
	Name    string // <program>_<hook>, e.g. proxy_ingress, speedlimit_xdp
	Runs    uint64
	Runtime time.Duration
}

// ProgramRunner is implemented by deployed subjects whose packets run BPF programs: it
// returns the kernel's run statistics of each, so a run can report their cost per packet.
type ProgramRunner interface {
	ProgramRuns() ([]ProgramRun, error)
}
