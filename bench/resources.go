package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"slices"
	"time"

	"github.com/edgebpf/edgebpf/stats"
)

// The phases of Resources, the X of its samples.
const (
	PhaseIdle    = "idle"
	PhaseLoad    = "load"
	PhaseCleanup = "cleanup"
)

// ResourcesConfig configures Resources. Zero-valued fields take the defaults given with
// them.
type ResourcesConfig struct {
	// Port is the TCP port of the load. Default 5203.
	Port uint16 `json:"port,omitempty"`
	// Idle, Load and Cleanup are the lengths of the three phases. Default 15s each: the
	// thesis's 45 s in thirds.
	Idle    Duration `json:"idle"`
	Load    Duration `json:"load"`
	Cleanup Duration `json:"cleanup"`
	// Interval is the sampling interval of CPU, RAM and load throughput. Default 500ms.
	Interval Duration `json:"interval"`
	// LoadRate is the rate of the TCP load in bit/s. Default 100e6 (the thesis's load).
	LoadRate Rate `json:"load_rate"`
	// Processes names the processes whose CPU time and resident memory are sampled, as
	// SysmonConfig.Processes. Default: this process and its child ProxyProcess (not another
	// run's), so that the user-space proxy's share shows apart from the meters'
	// (cpu_process:<name>, ram:<name>).
	Processes []string `json:"processes,omitempty"`
}

// ProxyProcess is the name (/proc/PID/comm) of the user-space proxy's process, which the
// userspace data plane starts; Resources samples it by default.
const ProxyProcess = "edgebpf-proxy"

// defaultProcesses is this process (edgebpf, or a test binary) and ProxyProcess.
func defaultProcesses() []string {
	self := "edgebpf"
	if b, err := os.ReadFile("/proc/self/comm"); err == nil && len(bytes.TrimSpace(b)) > 0 {
		self = string(bytes.TrimSpace(b))
	}
	if self == ProxyProcess {
		return []string{self}
	}
	return []string{self, ProxyProcess}
}

func (c ResourcesConfig) withDefaults() ResourcesConfig {
	for _, d := range []*Duration{&c.Idle, &c.Load, &c.Cleanup} {
		if *d == 0 {
			*d = Duration(15 * time.Second)
		}
	}
	if c.Interval == 0 {
		c.Interval = Duration(500 * time.Millisecond)
	}
	if c.LoadRate == 0 {
		c.LoadRate = 100e6
	}
	if c.Port == 0 {
		c.Port = 5203
	}
	if len(c.Processes) == 0 {
		c.Processes = defaultProcesses()
	}
	return c
}

// Validate reports every field of c that Resources cannot use, one sentence each. Zero
// fields are valid: they take their defaults.
func (c ResourcesConfig) Validate() error {
	d := c.withDefaults()
	var errs []error
	for _, p := range []struct {
		name string
		v    Duration
	}{{"idle", c.Idle}, {"load", c.Load}, {"cleanup", c.Cleanup}} {
		if p.v < 0 {
			errs = append(errs, fmt.Errorf("resources: %s phase %v is negative: give its length, or 0 for the default 15s", p.name, p.v))
		}
	}
	if d.Interval < 0 {
		errs = append(errs, fmt.Errorf("resources: interval %v is negative: give the time between samples, or 0 for the default 500ms", c.Interval))
	} else if d.Interval < Duration(minSysmonInterval) {
		errs = append(errs, fmt.Errorf("resources: interval %v is below the kernel's 10ms CPU accounting tick: give at least %v", c.Interval, minSysmonInterval))
	} else if d.Load > 0 && d.Load < d.Interval {
		errs = append(errs, fmt.Errorf("resources: load phase %v is shorter than interval %v: give a load phase of at least one interval", d.Load, d.Interval))
	}
	if d.LoadRate < minRate || math.IsNaN(float64(d.LoadRate)) || math.IsInf(float64(d.LoadRate), 0) {
		errs = append(errs, fmt.Errorf("resources: load rate %g bit/s cannot be paced: give at least %g bit/s, or 0 for the default 100 Mbit/s", c.LoadRate, minRate))
	}
	if err := (SysmonConfig{Processes: c.Processes}).Validate(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// The lifecycle events of Resources, the X of its stats.Lifecycle samples (XUnit EventUnit).
const (
	EventDeploy   = "deploy"
	EventUndeploy = "undeploy"
	EventUnit     = "event"
)

// Lifecycle deploys the services a meter measures and removes them again. Resources calls
// Deploy at the start of the Load phase and Undeploy at the start of Cleanup, as the Riegel
// thesis deployed its two services (§4.5), so that what deploying costs the data plane is part
// of the curves. bench does not know what a deploy does; scenarios adds the services and
// their instances to a node.
type Lifecycle interface {
	// Deploy creates the services and returns where the load runs.
	Deploy(ctx context.Context) (Endpoints, error)
	// Undeploy removes what Deploy created. Resources calls it after every Deploy that
	// returned, even one that failed or was cancelled, so it must undo a partial Deploy.
	Undeploy() error
}

// Deployed is a Lifecycle whose services exist throughout: Deploy returns its endpoints and
// Undeploy does nothing. Tests over loopback use it.
type Deployed Endpoints

// Deploy returns the endpoints.
func (d Deployed) Deploy(context.Context) (Endpoints, error) { return Endpoints(d), nil }

// Undeploy does nothing.
func (Deployed) Undeploy() error { return nil }

// Resources runs the CPU/RAM experiment of the Riegel thesis: it samples the machine with
// Sysmon through three phases, PhaseIdle for cfg.Idle; PhaseLoad, which begins with
// lc.Deploy and then runs a TCPThroughput paced to cfg.LoadRate from the deployed client to
// its target for cfg.Load; and PhaseCleanup, which begins with lc.Undeploy and lasts cfg.Cleanup
// in all. The load generator and its receiver run in this process, so their CPU time is part
// of the system-wide figures, as iperf3's was in the thesis. The user-space proxy runs in a
// process of its own (ProxyProcess), so by default its CPU time and memory are sampled apart
// from this process's.
//
// Resources returns the Sysmon samples (X is the phase), the load's stats.Throughput samples
// with X PhaseLoad, so a result shows whether the load ran at its rate, and one
// stats.Lifecycle sample per deploy and undeploy (X EventDeploy or EventUndeploy, XUnit
// EventUnit, T the moment it began, the value how long it took); every T is in seconds since
// Resources started. Samples are ordered by T. When ctx ends it undeploys, stops within about
// a second and returns the samples so far with ctx.Err().
func Resources(ctx context.Context, lc Lifecycle, cfg ResourcesConfig) ([]stats.Sample, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if lc == nil {
		return nil, errors.New("resources: no lifecycle: give the services to deploy, or bench.Deployed endpoints")
	}
	own := len(cfg.Processes) == 0
	cfg = cfg.withDefaults()
	mon, err := StartSysmon(SysmonConfig{Interval: time.Duration(cfg.Interval), Processes: cfg.Processes, Own: own})
	if err != nil {
		return nil, fmt.Errorf("resources: %w", err)
	}
	r := &resourcesRun{mon: mon, cfg: cfg, lc: lc}
	runErr := r.run(ctx)
	samples := append(mon.Stop(), r.extra...)
	slices.SortStableFunc(samples, func(a, b stats.Sample) int { return cmpFloat(a.T, b.T) })
	switch {
	case runErr != nil && ctx.Err() != nil && errors.Is(runErr, ctx.Err()):
		return samples, ctx.Err()
	case runErr != nil:
		return samples, fmt.Errorf("resources: %w", runErr)
	}
	return samples, mon.Err()
}

// resourcesRun is one run of Resources: its monitor and the samples it adds to the monitor's.
type resourcesRun struct {
	mon   *Sysmon
	cfg   ResourcesConfig
	lc    Lifecycle
	extra []stats.Sample // the load's throughput and the lifecycle events
}

func (r *resourcesRun) since() float64 { return time.Since(r.mon.start).Seconds() }

// event records a lifecycle event that began at t (seconds since the start) and ended now.
func (r *resourcesRun) event(x string, seq int, t float64) {
	r.extra = append(r.extra, stats.Sample{Seq: seq, T: t, X: x, XUnit: EventUnit, Metric: stats.Lifecycle, Value: r.since() - t})
}

func (r *resourcesRun) run(ctx context.Context) (err error) {
	r.mon.SetPhase(PhaseIdle)
	if err := sleepCtx(ctx, time.Duration(r.cfg.Idle)); err != nil {
		return err
	}
	r.mon.SetPhase(PhaseLoad)
	t := r.since()
	ep, err := r.lc.Deploy(ctx)
	r.event(EventDeploy, 0, t)
	defer func() {
		r.mon.SetPhase(PhaseCleanup)
		t, cleanupEnd := r.since(), time.Now().Add(time.Duration(r.cfg.Cleanup))
		uerr := r.lc.Undeploy()
		r.event(EventUndeploy, 1, t)
		if uerr != nil {
			err = errors.Join(err, fmt.Errorf("undeploy: %w", uerr))
		}
		if err == nil {
			err = sleepCtx(ctx, time.Until(cleanupEnd))
		}
	}()
	if err != nil {
		return fmt.Errorf("deploy: %w", err)
	}
	if err := checkEndpoints(ep); err != nil {
		return fmt.Errorf("deploy: %w", err)
	}
	offset := r.since()
	load, err := TCPThroughput(ctx, ep, TCPThroughputConfig{
		Port:     r.cfg.Port,
		Duration: r.cfg.Load,
		Interval: r.cfg.Interval,
		Rate:     r.cfg.LoadRate,
	})
	for i := range load {
		load[i].T += offset
		load[i].X, load[i].XUnit = PhaseLoad, PhaseUnit
	}
	r.extra = append(r.extra, load...)
	if err != nil && ctx.Err() == nil {
		return fmt.Errorf("load: %w", err)
	}
	return err
}

func cmpFloat(a, b float64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// sleepCtx waits for d or until ctx ends, and returns ctx.Err() in that case.
func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
