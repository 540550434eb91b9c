package scenarios

import (
	"cmp"
	"fmt"
	"time"

	"github.com/edgebpf/edgebpf/bench"
)

// The figures the estimates are built from, measured on this project's 2-core VM (Linux
// 6.18; other engineers' work kept its load average between 6 and 70) with edgebpf run
// --profile smoke and quick; cloudlab/README.md shows the arithmetic.
const (
	// estNodeSetup builds one node, deploys its subject and removes both again.
	estNodeSetup = time.Second
	// estRepOverhead is a repetition's time beyond its meter's nominal duration: starting
	// and stopping the meter's server, the receiver's grace, writing the raw rows.
	estRepOverhead = 400 * time.Millisecond
	// estPerRate is the bottleneck sweep's time per rate beyond per_rate and pause.
	estPerRate = 170 * time.Millisecond
	// estResponderStart is a speed-limit server's fresh start before each repetition.
	estResponderStart = 500 * time.Millisecond
	// estSLDefaultRate is the request rate of a configuration estSLRate does not list.
	estSLDefaultRate = 40e3
	// estRRBusy is one busy request-response round trip (40 - 150 us here, by data plane).
	estRRBusy = 100 * time.Microsecond
	// estScaleInstance is adding one instance to a node, its data plane told (20 - 30 ms).
	estScaleInstance = 30 * time.Millisecond
	// estScaleAttach is creating a module on one instance: a TCX attach, which waits for an
	// RCU grace period (14 - 80 ms here).
	estScaleAttach = 40 * time.Millisecond
)

// estSLRate is the closed-loop speed-limit requests answered per second per configuration.
// The user-space server answers 30 - 55 k/s whatever the load (one thread); the XDP
// configurations, whose program runs in the clients' own sending threads, answered 160 - 210
// k/s at load average 6, 120 k/s with 300 clients x 10,000 requests (cloudlab/README.md) and
// 45 k/s at load average 130. The estimates take 45 k/s and 120 k/s.
var estSLRate = map[string]float64{"userspace": 45e3, "mixed": 120e3, "ebpf": 120e3}

// estDropPoint is the drop point a search is expected to find per configuration (-1: no
// drop up to 5000 clients), measured with the quick profile; the thesis found 139 for
// user space.
var estDropPoint = map[string]int{"userspace": 90, "mixed": -1, "ebpf": -1}

// Estimate is how long one experiment of a plan is expected to take on this project's
// machine: every subject's node, warm-up and repetitions.
type Estimate struct {
	Experiment string
	Meter      string
	Reps       int
	// Subjects are the data planes or configurations, each with its expected time per
	// repetition.
	Subjects []SubjectEstimate
	// Warmup is all subjects' warm-ups together; Total includes it and the nodes' setup.
	Warmup time.Duration
	Total  time.Duration
}

// SubjectEstimate is one subject's expected time per repetition.
type SubjectEstimate struct {
	Name string
	Rep  time.Duration
	// Skip says why the subject will not run, when that is known without the machine (a
	// data plane that cannot cross workers); its time is then not counted.
	Skip string
}

// DryRun resolves a run's options into its plan, as Run would, and estimates each
// experiment's duration from its parameters, repetitions, subjects and warm-up. It touches
// nothing on the machine.
func DryRun(o RunOptions) ([]Estimate, error) {
	warm, err := o.check()
	if err != nil {
		return nil, err
	}
	exps, err := o.Suite.Select(o.Experiments)
	if err != nil {
		return nil, err
	}
	var out []Estimate
	for _, e := range exps {
		jobs, err := o.jobs(e, warm)
		if err != nil {
			return nil, err
		}
		est := Estimate{Experiment: e.Name, Meter: e.Meter}
		if o.Topology.Kind == CrossNode {
			est.Experiment += CrossNodeSuffix
		}
		for _, j := range jobs {
			name := j.name()
			if o.Topology.Kind != CrossNode && j.plan.Experiment != e.Name { // both topologies
				name += CrossNodeSuffix
			}
			est.Reps = j.plan.Reps
			if j.skip != "" {
				est.Subjects = append(est.Subjects, SubjectEstimate{Name: name, Skip: j.skip})
				continue
			}
			rep, ok := EstimateRep(j.plan.Params, j.name())
			if !ok {
				return nil, fmt.Errorf("experiment %s: meter %s has no run time estimate", e.Name, e.Meter)
			}
			est.Subjects = append(est.Subjects, SubjectEstimate{Name: name, Rep: rep})
			if j.warmup != nil {
				w, _ := EstimateRep(j.warmup.Params, j.name())
				est.Warmup += w
			}
			est.Total += estNodeSetup + time.Duration(j.plan.Reps)*rep
		}
		est.Total += est.Warmup
		out = append(out, est)
	}
	return out, nil
}

// EstimateRep is the expected time of one repetition of a meter with these effective
// parameters (a Plan's Params) on subject; ok is false for parameters of a meter it does
// not know.
func EstimateRep(params any, subject string) (d time.Duration, ok bool) {
	return estimateRep(params, subject), knownParams(params)
}

func knownParams(params any) bool {
	switch params.(type) {
	case bench.ConnectConfig, bench.UDPJitterConfig, bench.TCPThroughputConfig, bench.UDPSweepConfig, bench.ResourcesConfig,
		bench.ReferenceConfig, bench.RRConfig, ScaleParams, SpeedLimitResponseParams, SpeedLimitDropPointParams, SpeedLimitScalingParams, SpeedLimitLoadParams:
		return true
	}
	return false
}

func estimateRep(params any, subject string) time.Duration {
	switch p := params.(type) {
	case bench.ConnectConfig:
		return time.Duration(cmp.Or(p.Count, 20))*cmp.Or(time.Duration(p.Interval), 100*time.Millisecond) + estRepOverhead
	case bench.UDPJitterConfig:
		return time.Duration(p.Duration) + estRepOverhead
	case bench.TCPThroughputConfig:
		return time.Duration(p.Duration) + time.Duration(p.Omit) + estRepOverhead
	case bench.UDPSweepConfig:
		return time.Duration(len(p.Rates))*(time.Duration(p.PerRate)+time.Duration(p.Pause)+estPerRate) + estRepOverhead
	case bench.ResourcesConfig:
		return time.Duration(p.Idle+p.Load+p.Cleanup) + estRepOverhead
	case bench.ReferenceConfig:
		// Per round: iperf3 and ours for TCP, sockperf, the connects, and the jitter pairs
		// with one kernel-stamped UDP stream.
		d := cmp.Or(time.Duration(p.Duration), 5*time.Second)
		jd := cmp.Or(time.Duration(p.JitterDuration), d)
		jitter := time.Duration(2*cmp.Or(p.JitterRepeat, 1)+1) * (jd + estRepOverhead)
		pings := time.Duration(cmp.Or(p.PingCount, 200)) * cmp.Or(time.Duration(p.PingInterval), 10*time.Millisecond)
		return time.Duration(cmp.Or(p.Rounds, 3))*(3*d+jitter+pings+3*estRepOverhead) + estRepOverhead
	case bench.RRConfig:
		return estRR(p) + estRepOverhead
	case ScaleParams:
		return estScale(p) + estRepOverhead
	case SpeedLimitResponseParams:
		return estResponderStart + slRequests(subject, p.Clients, p.Requests)
	case SpeedLimitDropPointParams:
		return estResponderStart + estDropSearch(p.SpeedLimitDropPointConfig, subject)
	case SpeedLimitScalingParams:
		return estResponderStart + estScaling(p.SpeedLimitScalingConfig, subject)
	case SpeedLimitLoadParams:
		pause := cmp.Or(time.Duration(p.Pause), time.Second)
		return estResponderStart + time.Duration(len(p.Rates))*(time.Duration(p.PerRate)+pause)
	}
	return 0
}

// slRequests is the time n closed-loop clients take for requests each on subject.
func slRequests(subject string, n, requests int) time.Duration {
	rate := estSLRate[subject]
	if rate == 0 {
		rate = estSLDefaultRate
	}
	total := float64(n * cmp.Or(requests, 10000))
	return time.Duration(total / rate * float64(time.Second))
}

// estDropSearch is a drop-point search's time: its starts as bench lists them for the
// expected drop point, each clean one running all its requests and each dropping one
// stopped at its first timeout, with the pause between starts.
func estDropSearch(c bench.SpeedLimitDropPointConfig, subject string) time.Duration {
	drop, ok := estDropPoint[subject]
	if !ok {
		drop = -1
	}
	pause := cmp.Or(time.Duration(c.Pause), time.Second)
	timeout := cmp.Or(time.Duration(c.Timeout), time.Second)
	var d time.Duration
	for i, n := range c.Starts(drop) {
		if i > 0 {
			d += pause
		}
		if drop >= 0 && n > drop {
			d += timeout
		} else {
			d += slRequests(subject, n, c.Requests)
		}
	}
	return d
}

// estScaling is a scaling sweep's time: every count up to and including the first one
// above the expected drop point (or all, with Continue), with the pause between them.
func estScaling(c bench.SpeedLimitScalingConfig, subject string) time.Duration {
	drop, ok := estDropPoint[subject]
	if !ok {
		drop = -1
	}
	pause := cmp.Or(time.Duration(c.Pause), time.Second)
	var d time.Duration
	for i, n := range c.Clients {
		if i > 0 {
			d += pause
		}
		d += slRequests(subject, n, c.Requests)
		if drop >= 0 && n > drop && !c.Continue {
			break
		}
	}
	return d
}

// estRR is a request-response repetition: per protocol, the busy round trips back to back
// and the paced ones at their interval (the meter's defaults where a field is zero).
func estRR(c bench.RRConfig) time.Duration {
	protocols := len(c.Protocols)
	if protocols == 0 {
		protocols = 2 // UDP and TCP
	}
	busy, paced := true, true
	if len(c.Modes) > 0 {
		busy, paced = false, false
		for _, m := range c.Modes {
			busy, paced = busy || m == bench.RRBusy, paced || m == bench.RRPaced
		}
	}
	var d time.Duration
	if busy {
		d += time.Duration(cmp.Or(c.BusyCount, 5000)) * estRRBusy
	}
	if paced {
		d += time.Duration(cmp.Or(c.PacedCount, 200)) * cmp.Or(time.Duration(c.Interval), 10*time.Millisecond)
	}
	return time.Duration(protocols) * d
}

// estScale is a scale repetition: every instance it adds along the services and instances
// axes, every module attach along the modules axis, and a connect and a stream per step.
func estScale(p ScaleParams) time.Duration {
	step := time.Duration(cmp.Or(p.RTT.Count, 20))*cmp.Or(time.Duration(p.RTT.Interval), 10*time.Millisecond) +
		time.Duration(p.Throughput.Duration) + 2*estRepOverhead
	var d time.Duration
	for _, n := range p.Services {
		d += time.Duration(n*max(p.InstancesPerService, 1))*estScaleInstance + step
	}
	for _, n := range p.Instances {
		d += time.Duration(n)*estScaleInstance + step
	}
	for _, n := range p.Modules {
		d += time.Duration(n*max(p.ModuleInstances, 1))*estScaleAttach + step
	}
	return d
}
