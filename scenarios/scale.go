package scenarios

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/edgebpf/edgebpf/bench"
	"github.com/edgebpf/edgebpf/dataplanes/ebpf/manager"
	"github.com/edgebpf/edgebpf/stats"
)

// ScaleParams are the scale experiment's parameters: three axes, each a list of steps, and
// what is measured at every step. The meter builds nodes of its own (the cost it measures is
// the control plane's), so it needs the runner's Env.NewNode.
//
// The services axis builds a fresh node per step, deploys the data plane and adds that many
// services (deploy_time:services), each with InstancesPerService instances while the node holds
// fewer than MaxInstances. The instances axis grows one node to each step's number of
// instances of one service. The modules axis (data planes with an eBPF manager only) grows a
// chain of counter and firewall modules, alternately, on a node of ModuleInstances instances.
// At every step: the time to add one instance (added, timed, removed again), to create one
// module on all instances (eBPF manager only), the connect RTT and TCP throughput between a
// client and a server instance, and the BPF run time per packet of all the data plane's
// programs together.
type ScaleParams struct {
	Services            []int `json:"services"`
	InstancesPerService int   `json:"instances_per_service"`
	MaxInstances        int   `json:"max_instances,omitempty"` // services axis; default 200
	Instances           []int `json:"instances"`
	Modules             []int `json:"modules"`
	ModuleInstances     int   `json:"module_instances"`
	// BPFStats has the kernel count BPF run time while the meter runs (bpf_ns_per_pkt).
	BPFStats   bool                      `json:"bpf_stats,omitempty"`
	RTT        bench.ConnectConfig       `json:"rtt"`
	Throughput bench.TCPThroughputConfig `json:"throughput"`
}

// The scale experiment's axes: the x_unit of its samples and the qualifier of its metrics
// (rtt:instances), so that the same x on two axes stays two curves.
const (
	axisServices  = "services"
	axisInstances = "instances"
	axisModules   = "modules"
)

// defaultMaxInstances bounds the instances of the services axis's services; maxNodeInstances
// is what a node's default /24 subnet holds beside the bridge and the meter's client, server
// and extra instance.
const (
	defaultMaxInstances = 200
	maxNodeInstances    = 240
)

// Validate checks the steps (ascending, in range) and the RTT and throughput configs.
func (p ScaleParams) Validate() error {
	var errs []error
	for _, a := range []struct {
		name   string
		steps  []int
		lo, hi int
	}{
		{"services", p.Services, 1, 65000},
		{"instances", p.Instances, 1, maxNodeInstances},
		{"modules", p.Modules, 0, manager.MaxModules},
	} {
		if !slices.IsSorted(a.steps) || len(slices.Compact(slices.Clone(a.steps))) != len(a.steps) {
			errs = append(errs, fmt.Errorf("%s %v must be ascending without repeats", a.name, a.steps))
		}
		for _, s := range a.steps {
			if s < a.lo || s > a.hi {
				errs = append(errs, fmt.Errorf("%s step %d must be between %d and %d", a.name, s, a.lo, a.hi))
			}
		}
	}
	if p.InstancesPerService < 0 || p.ModuleInstances < 0 || p.ModuleInstances > maxNodeInstances || p.MaxInstances < 0 || p.MaxInstances > maxNodeInstances {
		errs = append(errs, fmt.Errorf("instances_per_service %d, module_instances %d and max_instances %d must be between 0 and %d (a /24 node subnet)",
			p.InstancesPerService, p.ModuleInstances, p.MaxInstances, maxNodeInstances))
	}
	if len(p.Services)+len(p.Instances)+len(p.Modules) == 0 {
		errs = append(errs, errors.New("no steps: give services, instances or modules"))
	}
	return errors.Join(append(errs, p.RTT.Validate(), p.Throughput.Validate())...)
}

func (p ScaleParams) maxInstances() int {
	if p.MaxInstances == 0 {
		return defaultMaxInstances
	}
	return p.MaxInstances
}

func scaleMeter(raw json.RawMessage, o Overrides) (any, runFunc, error) {
	p, err := decode[ScaleParams](raw)
	if err != nil {
		return nil, nil, err
	}
	p.BPFStats = p.BPFStats || o.BPFStats
	if o.Duration > 0 {
		p.Throughput.Duration = bench.Duration(o.Duration)
	}
	if err := p.Validate(); err != nil {
		return nil, nil, err
	}
	return p, p.run, nil
}

// run walks the three axes in turn; every node it builds is removed before it returns, also
// when ctx is cancelled.
func (p ScaleParams) run(ctx context.Context, env Env) ([]stats.Sample, error) {
	if env.NewNode == nil {
		return nil, errors.New("the scale meter builds its own nodes, and this run gives it none")
	}
	if p.BPFStats {
		st, err := manager.CountRunTime()
		if err != nil {
			return nil, fmt.Errorf("bpf statistics: %w", err)
		}
		defer st.Close()
	}
	var out []stats.Sample
	for _, axis := range []func(context.Context, Env) ([]stats.Sample, error){p.servicesAxis, p.instancesAxis, p.modulesAxis} {
		s, err := axis(ctx, env)
		out = append(out, s...)
		if err != nil {
			return out, err
		}
	}
	for i := range out {
		out[i].Seq = i
	}
	return out, nil
}

// servicesAxis builds a node per step, timing the data plane's deployment with the step's
// services.
func (p ScaleParams) servicesAxis(ctx context.Context, env Env) ([]stats.Sample, error) {
	var out []stats.Sample
	for _, n := range p.Services {
		s, err := p.servicesStep(ctx, env, n)
		out = append(out, s...)
		if err != nil {
			return out, fmt.Errorf("%d services: %w", n, err)
		}
	}
	return out, nil
}

func (p ScaleParams) servicesStep(ctx context.Context, env Env, n int) (out []stats.Sample, err error) {
	sn, err := newScaleNode(ctx, env, "s"+strconv.Itoa(n))
	if err != nil {
		return nil, err
	}
	defer func() { err = errors.Join(err, sn.Close()) }()
	took, err := sn.deploy(ctx, n)
	if err != nil {
		return nil, err
	}
	x := point{axisServices, n}
	out = append(out, x.sample(stats.DeployTime, took.Seconds()))
	for i := 0; i < n && sn.instances < p.maxInstances(); i++ {
		for range p.InstancesPerService {
			if err := sn.addInstance(ctx, serviceName(i)); err != nil {
				return out, err
			}
		}
	}
	s, err := p.measure(ctx, sn, x)
	return append(out, s...), err
}

// instancesAxis grows one node's instances step by step.
func (p ScaleParams) instancesAxis(ctx context.Context, env Env) (out []stats.Sample, err error) {
	if len(p.Instances) == 0 {
		return nil, nil
	}
	sn, err := newScaleNode(ctx, env, "i")
	if err != nil {
		return nil, err
	}
	defer func() { err = errors.Join(err, sn.Close()) }()
	if _, err := sn.deploy(ctx, 1); err != nil {
		return nil, err
	}
	for _, n := range p.Instances {
		for sn.instances < n {
			if err := sn.addInstance(ctx, serviceName(0)); err != nil {
				return out, fmt.Errorf("%d instances: %w", n, err)
			}
		}
		x := point{axisInstances, n}
		if mgr := sn.manager(); mgr != nil {
			t0 := time.Now()
			inf, err := mgr.Create("counter", nil)
			if err != nil {
				return out, fmt.Errorf("%d instances: %w", n, err)
			}
			out = append(out, x.sample(stats.CreateModuleTime, time.Since(t0).Seconds()))
			if err := mgr.Delete(inf.ID); err != nil {
				return out, fmt.Errorf("%d instances: %w", n, err)
			}
		}
		s, err := p.measure(ctx, sn, x)
		if out = append(out, s...); err != nil {
			return out, fmt.Errorf("%d instances: %w", n, err)
		}
	}
	return out, nil
}

// modulesAxis grows a chain of counters and firewalls (default pass) step by step; data planes
// without an eBPF manager have no samples on it.
func (p ScaleParams) modulesAxis(ctx context.Context, env Env) (out []stats.Sample, err error) {
	if len(p.Modules) == 0 || !hasManager(env) {
		return nil, nil
	}
	sn, err := newScaleNode(ctx, env, "m")
	if err != nil {
		return nil, err
	}
	defer func() { err = errors.Join(err, sn.Close()) }()
	if _, err := sn.deploy(ctx, 1); err != nil {
		return nil, err
	}
	for sn.instances < p.ModuleInstances {
		if err := sn.addInstance(ctx, serviceName(0)); err != nil {
			return nil, err
		}
	}
	mgr, chain := sn.manager(), 0
	for _, k := range p.Modules {
		x := point{axisModules, k}
		for chain < k {
			name, cfg := "counter", json.RawMessage(nil)
			if chain%2 == 1 {
				name, cfg = "firewall", json.RawMessage(`{"default":"pass"}`)
			}
			if err := ctx.Err(); err != nil {
				return out, err
			}
			t0 := time.Now()
			if _, err := mgr.Create(name, cfg); err != nil {
				return out, fmt.Errorf("%d modules: %w", k, err)
			}
			if chain++; chain == k {
				out = append(out, x.sample(stats.CreateModuleTime, time.Since(t0).Seconds()))
			}
		}
		s, err := p.measure(ctx, sn, x)
		if out = append(out, s...); err != nil {
			return out, fmt.Errorf("%d modules: %w", k, err)
		}
	}
	return out, nil
}

// serviceName names the services a scale node adds: s0, s1, ...
func serviceName(i int) string { return "s" + strconv.Itoa(i) }

// point is a step of one axis.
type point struct {
	axis string
	x    int
}

// sample is a sample of m at the point, m qualified with the axis.
func (pt point) sample(m stats.Metric, v float64) stats.Sample {
	m.Name += ":" + pt.axis
	return stats.Sample{X: strconv.Itoa(pt.x), XUnit: pt.axis, Metric: m, Value: v}
}

// measure times adding one more instance (removed again) and measures RTT, throughput and the
// data plane's BPF run time per packet between the node's client and server.
func (p ScaleParams) measure(ctx context.Context, sn *scaleNode, pt point) ([]stats.Sample, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	t0 := time.Now()
	in, err := sn.Node.AddInstance("extra")
	if err != nil {
		return nil, fmt.Errorf("add one instance: %w", err)
	}
	out := []stats.Sample{pt.sample(stats.AddInstanceTime, time.Since(t0).Seconds())}
	if err := sn.Node.RemoveInstance(in); err != nil {
		return out, fmt.Errorf("remove the added instance: %w", err)
	}
	before := sn.programRuns()
	rtt, err := bench.ConnectRTT(ctx, sn.endpoints(), p.RTT)
	if err != nil {
		return out, err
	}
	tput, err := bench.TCPThroughput(ctx, sn.endpoints(), p.Throughput)
	if err != nil {
		return out, err
	}
	for _, s := range append(rtt, tput...) {
		q := pt.sample(s.Metric, s.Value)
		q.T = s.T
		out = append(out, q)
	}
	if ns, ok := chainCost(before, sn.programRuns()); ok {
		out = append(out, pt.sample(stats.BPFNsPerPkt, ns))
	}
	return out, nil
}
