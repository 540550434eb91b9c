package scenarios

import (
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	"github.com/edgebpf/edgebpf/dataplanes"
	"github.com/edgebpf/edgebpf/netsetup"
	"github.com/edgebpf/edgebpf/reports"
	"github.com/edgebpf/edgebpf/subjects"
)

// The topologies a run measures on.
const (
	// SameNode puts client and server on one node (the theses' setup): the default.
	SameNode = "same-node"
	// CrossNode builds a cluster of workers joined by an underlay per job, deploys the data
	// plane on every worker and places client and server on different workers.
	CrossNode = "cross-node"
)

// Topologies lists the topologies, the default first.
var Topologies = []string{SameNode, CrossNode}

// Topology says where a run's services live. The zero value is same-node. A suite file may
// carry one ("topology": {"kind": "cross-node", "workers": 2, "placement": {"client": 0,
// "server": 1}, "underlay_rate": "1G"}); the command line's flags override its fields.
type Topology struct {
	Kind string `json:"kind"`
	// Workers is the cluster's size under cross-node; default 2.
	Workers int `json:"workers,omitempty"`
	// Placement puts each service on a worker (by index) under cross-node; default client on
	// worker 0, server on worker 1. A partial placement keeps the default of the others.
	Placement Placement `json:"placement,omitempty"`
	// UnderlayRate shapes each worker's underlay link (its egress, with TBF) to this many
	// bit/s under cross-node; 0 leaves it unshaped.
	UnderlayRate Rate `json:"underlay_rate,omitempty"`
}

// Placement maps a service of the experiments (client, server) to a worker.
type Placement map[string]int

// defaultPlacement puts the client on worker 0 and the server on worker 1.
var defaultPlacement = Placement{"client": 0, "server": 1}

// ParsePlacement reads a placement such as "client=0,server=1".
func ParsePlacement(s string) (Placement, error) {
	out := Placement{}
	for item := range strings.SplitSeq(s, ",") {
		name, w, ok := strings.Cut(strings.TrimSpace(item), "=")
		if !ok || name == "" {
			return nil, fmt.Errorf("placement %q: give SERVICE=WORKER pairs, such as client=0,server=1", s)
		}
		i, err := strconv.Atoi(w)
		if err != nil {
			return nil, fmt.Errorf("placement %q: worker %q of %s is not a number: give the worker's index, such as %s=1", s, w, name, name)
		}
		if _, dup := out[name]; dup {
			return nil, fmt.Errorf("placement %q places %s twice: give each service once", s, name)
		}
		out[name] = i
	}
	return out, nil
}

// String renders a placement as ParsePlacement reads it, services in order.
func (p Placement) String() string {
	var b []string
	for _, k := range slices.Sorted(maps.Keys(p)) {
		b = append(b, fmt.Sprintf("%s=%d", k, p[k]))
	}
	return strings.Join(b, ",")
}

// Kinds lists the topologies t measures on: one, or "same-node,cross-node" for both, whose
// jobs then run side by side, their repetitions interleaved.
func (t Topology) Kinds() []string {
	if t.Kind == "" {
		return []string{SameNode}
	}
	var out []string
	for k := range strings.SplitSeq(t.Kind, ",") {
		out = append(out, strings.TrimSpace(k))
	}
	return out
}

// CrossNode says whether t builds clusters (alone or beside same-node jobs).
func (t Topology) CrossNode() bool { return slices.Contains(t.Kinds(), CrossNode) }

// as returns t measuring on one of its kinds.
func (t Topology) as(kind string) Topology {
	t.Kind = kind
	return t
}

// resolved fills the defaults: same-node for an empty kind, both kinds in the order of
// Topologies; for cross-node 2 workers and the default placement under the given one.
func (t Topology) resolved() Topology {
	kinds := t.Kinds()
	var ordered []string
	for _, k := range Topologies {
		if slices.Contains(kinds, k) {
			ordered = append(ordered, k)
		}
	}
	t.Kind = strings.Join(ordered, ",")
	if !t.CrossNode() {
		return t
	}
	if t.Workers == 0 {
		t.Workers = 2
	}
	p := maps.Clone(defaultPlacement)
	maps.Copy(p, t.Placement)
	t.Placement = p
	return t
}

// Validate checks a topology before anything is created: a known kind, cluster settings only
// under cross-node, a size the cluster supports, and a placement naming only the experiments'
// services and existing workers.
func (t Topology) Validate() error {
	kinds := t.Kinds()
	for i, k := range kinds {
		if !slices.Contains(Topologies, k) {
			return fmt.Errorf("unknown topology %q: choose %s, or both as %s", k, strings.Join(Topologies, " or "), strings.Join(Topologies, ","))
		}
		if slices.Index(kinds, k) < i {
			return fmt.Errorf("topology %s is listed twice: give each once", k)
		}
	}
	if !t.CrossNode() {
		if t.Workers != 0 || len(t.Placement) > 0 || t.UnderlayRate != 0 {
			return fmt.Errorf("workers, placement and underlay rate apply to a cluster: add --topology %s", CrossNode)
		}
		return nil
	}
	r := t.resolved()
	if r.Workers < 2 || r.Workers > 64 {
		return fmt.Errorf("%d workers is out of range for a cross-node run: use 2 to 64", r.Workers)
	}
	for _, svc := range slices.Sorted(maps.Keys(r.Placement)) {
		w := r.Placement[svc]
		if !slices.Contains(serviceNames[:], svc) {
			return fmt.Errorf("placement names service %q, which the experiments do not have: place %s", svc, strings.Join(serviceNames[:], " and "))
		}
		if w < 0 || w >= r.Workers {
			return fmt.Errorf("placement puts %s on worker %d, which does not exist: the cluster has workers 0 to %d (--workers %d)", svc, w, r.Workers-1, r.Workers)
		}
	}
	if r.UnderlayRate < 0 {
		return fmt.Errorf("underlay rate %g bit/s is negative: give a rate such as 1G, or leave it out for an unshaped underlay", float64(r.UnderlayRate))
	}
	return nil
}

// suffix is what a topology appends to the experiments' names in the results ("" for
// same-node, "@cross-node"), so that rows of both topologies never mix in one results
// directory or comparison.
func (t Topology) suffix() string {
	if t.Kind == CrossNode {
		return CrossNodeSuffix
	}
	return ""
}

// TopologySep separates an experiment's name from its topology in the results, and
// CrossNodeSuffix is what a cross-node experiment's name ends with: latency@cross-node. The
// report finds the cross-node rows by the same suffix.
const (
	TopologySep     = "@"
	CrossNodeSuffix = reports.CrossNodeSuffix
)

// clusterConfig is the cluster a cross-node job of the data plane or mixed subject `name`
// builds; its workers' names start with the subject's.
func (t Topology) clusterConfig(node netsetup.NodeConfig, name string) netsetup.ClusterConfig {
	n := node.Resolved()
	return netsetup.ClusterConfig{
		Name: "x-" + strings.ReplaceAll(name, dataplanes.MixedSep, "-"), Workers: t.Workers,
		MTU: n.MTU, ServiceRange: n.ServiceRange, RateBits: uint64(t.UnderlayRate),
	}
}

// meta describes a cross-node run's clusters for meta.json (same-node keeps topology()).
func (t Topology) meta(node netsetup.NodeConfig) map[string]any {
	c := t.clusterConfig(node, "x").Resolved()
	shaped := "unshaped"
	if c.RateBits > 0 {
		shaped = fmt.Sprintf("tbf at %s on each worker's underlay link (%s, egress), burst max(10 ms, 64 KiB), queue 50 ms",
			formatBits(float64(c.RateBits)), netsetup.UnderlayLink)
	}
	m := map[string]any{
		"kind": t.Kind, "cluster": "x-<data plane or mixed subject>, workers <cluster>-w<i>",
		"workers": c.Workers, "placement": map[string]int(t.Placement),
		"underlay": c.Underlay.String(), "underlay_mtu": c.UnderlayMTU, "underlay_shaping": shaped,
		"worker_subnets": c.WorkerNets.String() + " split in /24s, worker i 10.18.i.0/24",
		"mtu":            c.MTU, "overlay_mtu": c.MTU, "service_range": c.ServiceRange.String(),
		"services": serviceNames[:],
		"mixed":    "a mixed subject A+B runs A on worker 0, B on worker 1 (workers beyond the list the last)",
	}
	if slices.Contains(t.Kinds(), SameNode) { // beside the clusters, the nodes of the same-node jobs
		m["same_node"] = topology(node.Resolved())
	}
	return m
}

// formatBits renders a rate as "1 Gbit/s".
func formatBits(v float64) string {
	for _, u := range []struct {
		f float64
		s string
	}{{1e9, "Gbit/s"}, {1e6, "Mbit/s"}, {1e3, "kbit/s"}} {
		if v >= u.f {
			return strconv.FormatFloat(v/u.f, 'g', 4, 64) + " " + u.s
		}
	}
	return strconv.FormatFloat(v, 'g', 4, 64) + " bit/s"
}

// crossMeters are the meters that run across workers: they need only the client and server
// endpoints (or deploy them through Env.Services). The responder experiments deploy a server
// of their own on one node and scale builds bare nodes: they stay same-node.
var crossMeters = map[string]bool{
	"connect-rtt": true, "request-response": true, "tcp-throughput": true, "udp-jitter": true,
	"udp-sweep": true, "resources": true, "reference-tools": true,
}

// registry and mixedKnown are the data planes and mixed subjects the runner offers; tests
// replace them (a data plane with test-only routes across workers).
var (
	registry   = subjects.DataPlanes
	mixedKnown = subjects.Mixed
)

// ParseDataPlanes reads --dataplane for a topology: a comma-separated list of data planes
// and, under cross-node, mixed subjects (A+B); "all" is every data plane and, under
// cross-node, the known mixed subjects too. A mixed subject on one node is refused.
func ParseDataPlanes(list, topology string) ([]string, error) {
	reg := registry()
	cross := Topology{Kind: topology}.CrossNode()
	if strings.TrimSpace(list) == "all" {
		out := reg.Names()
		if cross {
			for _, m := range mixedKnown() {
				out = append(out, m.Name)
			}
		}
		return out, nil
	}
	var plain, out []string
	for n := range strings.SplitSeq(list, ",") {
		n = strings.TrimSpace(n)
		if !dataplanes.IsMixed(n) {
			plain = append(plain, n)
			out = append(out, n)
			continue
		}
		if err := checkMixed(reg, n, cross); err != nil {
			return nil, err
		}
		if slices.Contains(out, n) {
			return nil, fmt.Errorf("data plane %q is listed twice", n)
		}
		out = append(out, n)
	}
	if len(plain) > 0 {
		if _, err := reg.Parse(strings.Join(plain, ",")); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// checkMixed checks a mixed subject's name and that the topology has workers for it.
func checkMixed(reg dataplanes.Registry, name string, cross bool) error {
	if _, err := reg.Mixed(name, mixedKnown()); err != nil {
		return err
	}
	if !cross {
		return fmt.Errorf("%s runs a different data plane on each worker of a cluster: it exists only with --topology %s", name, CrossNode)
	}
	return nil
}

// lookupSubject resolves a selected name into the job's subject spec and the data plane of
// each worker (one, on one node).
func lookupSubject(name string, t Topology) (dataplanes.Spec, []dataplanes.Spec, error) {
	reg := registry()
	if !dataplanes.IsMixed(name) {
		s, err := reg.Lookup(name)
		if err != nil {
			return dataplanes.Spec{}, nil, err
		}
		n := 1
		if t.CrossNode() {
			n = t.Workers
		}
		planes := make([]dataplanes.Spec, n)
		for i := range planes {
			planes[i] = s
		}
		return s, planes, nil
	}
	if err := checkMixed(reg, name, t.CrossNode()); err != nil {
		return dataplanes.Spec{}, nil, err
	}
	m, _ := reg.Mixed(name, mixedKnown())
	planes := make([]dataplanes.Spec, t.Workers)
	for i := range planes {
		planes[i] = m.Plane(reg, i)
	}
	// The subject: the mixed spec's facts; its data plane on the client's worker deploys
	// first and answers Target.
	s := planes[0]
	s.Spec = m.Spec
	s.CrossNode = !slices.ContainsFunc(planes, func(p dataplanes.Spec) bool { return !p.CrossNode })
	return s, planes, nil
}

// crossReason says why a cross-node job cannot run its data planes across workers, or "".
func crossReason(planes []dataplanes.Spec) string {
	var lacking []string
	for _, p := range planes {
		if !p.CrossNode && !slices.Contains(lacking, p.Name) {
			lacking = append(lacking, p.Name)
		}
	}
	if len(lacking) == 0 {
		return ""
	}
	if len(lacking) == 1 {
		return fmt.Sprintf("data plane %s does not carry traffic between workers in this build (its spec has no CrossNode)", lacking[0])
	}
	return fmt.Sprintf("data planes %s do not carry traffic between workers in this build (their specs have no CrossNode)", strings.Join(lacking, " and "))
}

// over returns t with the fields it leaves zero taken from base (a suite's topology). An
// explicit same-node drops base's cluster settings.
func (t Topology) over(base *Topology) Topology {
	if base == nil || t.Kind == SameNode {
		return t
	}
	r := *base
	if t.Kind != "" {
		r.Kind = t.Kind
	}
	if t.Workers != 0 {
		r.Workers = t.Workers
	}
	if len(t.Placement) > 0 {
		r.Placement = maps.Clone(r.Placement)
		if r.Placement == nil {
			r.Placement = Placement{}
		}
		maps.Copy(r.Placement, t.Placement)
	}
	if t.UnderlayRate != 0 {
		r.UnderlayRate = t.UnderlayRate
	}
	return r
}

// selectsAll says whether the experiments a user named mean every experiment.
func selectsAll(names []string) bool {
	return len(names) == 0 || len(names) == 1 && names[0] == "all"
}

// sameNodeOnly resolves an experiment whose meter cannot run across workers in a cross-node
// run: named explicitly, it is an error; selected by "all", its jobs are skipped with the
// reason, so meta.json and the report say why it is missing.
func (o *RunOptions) sameNodeOnly(e Experiment, plan Plan, warmup *Plan) ([]job, error) {
	why := fmt.Sprintf("experiment %s runs on one node only: its meter %s deploys a server of its own or builds nodes of its own", e.Name, e.Meter)
	if !selectsAll(o.Experiments) {
		return nil, fmt.Errorf("%s: drop it from this --topology %s run, or run it with --topology %s", why, CrossNode, SameNode)
	}
	if len(e.Configurations) > 0 {
		return responderJobs(e, plan, warmup, why)
	}
	var out []job
	for _, dp := range o.DataPlanes {
		spec, planes, err := lookupSubject(dp, o.Topology)
		if err != nil {
			return nil, err
		}
		out = append(out, job{plan: plan, subject: spec.Spec, plane: spec, planes: planes, warmup: warmup, skip: why})
	}
	return out, nil
}

// planMeta records in meta.json, before the run, the settings of a job's data planes (each
// under its name) and, for a mixed subject, which data plane each worker runs.
func planMeta(meta *reports.Meta, j *job) {
	planned := func(name string) bool {
		return slices.ContainsFunc(meta.DataPlanes, func(d reports.DataPlaneMeta) bool { return d.Name == name })
	}
	planes := j.planes
	if planes == nil {
		planes = []dataplanes.Spec{j.plane}
	}
	for _, p := range planes {
		if !planned(p.Name) {
			meta.DataPlanes = append(meta.DataPlanes, reports.DataPlaneMeta{Name: p.Name, Settings: p.New().Settings()})
		}
	}
	if dataplanes.IsMixed(j.subject.Name) && !planned(j.subject.Name) {
		meta.DataPlanes = append(meta.DataPlanes, reports.DataPlaneMeta{Name: j.subject.Name, Settings: workerPlanes(planes)})
	}
}

// workerPlanes names each worker's data plane: {"worker0": "ebpf", "worker1": "userspace"}.
func workerPlanes(planes []dataplanes.Spec) map[string]string {
	out := map[string]string{}
	for i, p := range planes {
		out["worker"+strconv.Itoa(i)] = p.Name
	}
	return out
}
