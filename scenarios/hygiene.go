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
			Configuration: j.subject.Kind == subject.Responder, Reason: j.reason(r)}
	}
	return out, nil
}

// reason says why a job cannot run on a machine with r, or "" if it can: what the job knows
// before the probe (a data plane that cannot cross workers), else what the machine lacks.
func (j job) reason(r features.Report) string {
	if j.skip != "" {
		return j.skip
	}
	return j.missing(r)
}

// CrossNodeVerdict says whether a data plane or mixed subject can run across the workers of a
// cluster on a machine, and why not.
type CrossNodeVerdict struct {
	Subject string
	Reason  string // "" when it can
}

// CrossNodeFeasibility tells, for every data plane and known mixed subject, whether a
// `--topology cross-node` run can measure it on a machine with r.
func CrossNodeFeasibility(r features.Report) []CrossNodeVerdict {
	names := registry().Names()
	for _, m := range mixedKnown() {
		names = append(names, m.Name)
	}
	t := Topology{Kind: CrossNode}.resolved()
	var out []CrossNodeVerdict
	for _, n := range names {
		spec, planes, err := lookupSubject(n, t)
		v := CrossNodeVerdict{Subject: n}
		switch {
		case err != nil:
			v.Reason = err.Error()
		default:
			j := job{subject: spec.Spec, plane: spec, planes: planes, skip: crossReason(planes)}
			v.Reason = j.reason(r)
		}
		out = append(out, v)
	}
	return out
}

// pinningNote says what --cpu-* pin, for meta.json.
const pinningNote = "pinned: the meters' client and server loops and the iperf3/sockperf processes they start, " +
	"the speed-limit server's loop, the userspace proxy's packet loop; not pinned: other goroutines of the " +
	"process, and kernel work (veth, bridge, TC/XDP programs, nftables), which runs mostly on the sending thread's CPU"
