package scenarios

import (
	"fmt"
	"slices"
	"strings"

	"github.com/edgebpf/edgebpf/internal/features"
	"github.com/edgebpf/edgebpf/subject"
)

// What each job needs of the machine (package features), besides what its subjects' specs
// say: every job builds a node (namespaces, a bridge and veths), and the calibration meter
// runs iperf3 and sockperf.
var (
	nodeNeeds  = []features.Name{features.Netns, features.Bridge, features.Veth}
	meterNeeds = map[string][]features.Name{"reference-tools": {features.Iperf3, features.Sockperf}}
)

// needs lists the features a job needs: the node's, its data plane's, its responder's (if the
// subject is one) and its meter's.
func (j job) needs() []features.Name {
	n := slices.Concat(nodeNeeds, j.plane.Needs)
	if j.subject.Kind == subject.Responder {
		n = append(n, j.subject.Needs...)
	}
	return append(n, meterNeeds[j.plan.Meter]...)
}

// missing says why a job cannot run on a machine with r, or "" if it can.
func (j job) missing(r features.Report) string {
	var parts []string
	for _, f := range r.Missing(j.needs()...) {
		parts = append(parts, fmt.Sprintf("this machine lacks %s (%s)", f.Name, f.Detail))
	}
	return strings.Join(parts, "; ")
}

// Verdict says whether one experiment can run on one data plane (or in one configuration)
// on a machine, and why not.
type Verdict struct {
	Experiment string
	Optional   bool
	DataPlane  string // the data plane, or the configuration
	// Configuration says DataPlane is a speed-limit server configuration (on direct).
	Configuration bool
	Reason        string // "" when it can run
}

// Feasibility tells, for every experiment of the suite (optional ones too) on every data
// plane in planes — or in each of its configurations —, whether a machine with r can run it.
func Feasibility(s *Suite, planes []string, r features.Report) ([]Verdict, error) {
	o := RunOptions{Suite: s, Experiments: s.Names(), DataPlanes: planes, Profile: "smoke", Warmup: new(bool)}
	jobs, _, err := o.prepare()
	if err != nil {
		return nil, err
	}
	out := make([]Verdict, len(jobs))
	for i, j := range jobs {
		e, _ := s.Select([]string{j.plan.Experiment})
		out[i] = Verdict{Experiment: j.plan.Experiment, Optional: e[0].Optional, DataPlane: j.name(),
			Configuration: j.subject.Kind == subject.Responder, Reason: j.missing(r)}
	}
	return out, nil
}

// pinningNote says what --cpu-* pin, for meta.json.
const pinningNote = "pinned: the meters' client and server loops and the iperf3/sockperf processes they start, " +
	"the speed-limit server's loop, the userspace proxy's packet loop; not pinned: other goroutines of the " +
	"process, and kernel work (veth, bridge, TC/XDP programs, nftables), which runs mostly on the sending thread's CPU"
