package scenarios

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/edgebpf/edgebpf/bench"
	"github.com/edgebpf/edgebpf/dataplanes"
	"github.com/edgebpf/edgebpf/netsetup"
	"github.com/edgebpf/edgebpf/stats"
)

// Overrides are the command line's changes to a profile's parameters. Zero fields change
// nothing. Duration sets each experiment's main duration: the stream length (throughput,
// jitter), the time per rate (bottleneck), the whole run split in thirds (resources), the
// number of pings times their interval (latency) and each tool run (calibration). Rates
// replaces the bottleneck's rate list.
type Overrides struct {
	Reps     int
	Duration time.Duration
	Rates    []float64
	// BPFStats records the run time per packet of the BPF programs a repetition runs
	// (bpf_ns_per_pkt); it turns the speed-limit experiments' bpf_stats on.
	BPFStats bool
}

// overridable names, per override of the command line, the meters that honour it.
var overridable = map[string][]string{
	"--duration": {"connect-rtt", "tcp-throughput", "udp-jitter", "udp-sweep", "resources", "reference-tools", "speedlimit-load"},
	"--rates":    {"udp-sweep"},
}

// checkOverrides returns an error when an override is set that none of exps honours, naming
// the experiments of suite it applies to.
func (o Overrides) checkOverrides(suite *Suite, exps []Experiment) error {
	set := map[string]bool{"--duration": o.Duration > 0, "--rates": len(o.Rates) > 0}
	for _, flag := range []string{"--duration", "--rates"} {
		if !set[flag] || slices.ContainsFunc(exps, func(e Experiment) bool { return slices.Contains(overridable[flag], e.Meter) }) {
			continue
		}
		var applies, chosen []string
		for _, e := range suite.Experiments {
			if slices.Contains(overridable[flag], e.Meter) {
				applies = append(applies, e.Name)
			}
		}
		for _, e := range exps {
			chosen = append(chosen, e.Name)
		}
		if len(applies) == 0 {
			return fmt.Errorf("%s applies to no experiment of this suite: drop it", flag)
		}
		return fmt.Errorf("%s does not apply to %s: it applies to %s", flag, strings.Join(chosen, ", "), strings.Join(applies, ", "))
	}
	return nil
}

// Plan is an experiment resolved for one profile: the meter to run, how often, and with
// which parameters.
type Plan struct {
	Experiment string
	Meter      string
	Reps       int
	Params     any    // the effective parameters, as recorded in meta.json
	Placement  string // the experiment's Placement
	run        runFunc
}

// Env is what one repetition of a meter runs against: the client and server instances and the
// address the client uses, whatever subject is deployed between them. A meter that measures
// the control plane (scale) builds nodes of its own: NewNode builds a bare node in the run's
// session, named after the job's node and suffix, and Plane is the job's data plane to
// deploy on it. A meter that deploys the services itself (resources, at its phase borders)
// finds the node without them, Endpoints empty, and Services to deploy and remove them.
type Env struct {
	bench.Endpoints
	Plane   dataplanes.Spec
	NewNode func(suffix string) (*netsetup.Node, error)
	// Services adds the client and server services to the job's node and removes them again;
	// set only for the meters in deployingMeters.
	Services bench.Lifecycle
}

// Run runs the meter once.
func (p Plan) Run(ctx context.Context, env Env) ([]stats.Sample, error) {
	return p.run(ctx, env)
}

// Plan resolves the experiment under profile with the overrides applied, checking every
// parameter.
func (e Experiment) Plan(profile string, o Overrides) (Plan, error) {
	if err := CheckProfile(profile); err != nil {
		return Plan{}, err
	}
	pr, ok := e.Profiles[profile]
	if !ok {
		return Plan{}, fmt.Errorf("experiment %s has no %s profile", e.Name, profile)
	}
	name := meterName(e.Meter)
	m, ok := meters[name]
	if !ok {
		return Plan{}, fmt.Errorf("experiment %s: unknown meter %q", e.Name, e.Meter)
	}
	reps := pr.Reps
	if o.Reps != 0 {
		reps = o.Reps
	}
	if reps < 1 {
		return Plan{}, fmt.Errorf("experiment %s, profile %s: reps %d must be at least 1", e.Name, profile, reps)
	}
	params, run, err := m(pr.Params, o)
	if err != nil {
		return Plan{}, fmt.Errorf("experiment %s, profile %s: %w", e.Name, profile, err)
	}
	return Plan{Experiment: e.Name, Meter: name, Reps: reps, Params: params, Placement: e.Placement, run: run}, nil
}

type runFunc = func(context.Context, Env) ([]stats.Sample, error)

// A meter decodes its parameters, applies overrides, validates, and returns the effective
// parameters with a function that runs it.
type meterFunc func(raw json.RawMessage, o Overrides) (any, runFunc, error)

// meters are keyed by what they measure; bench's package doc maps each experiment to its
// meter and file.
var meters = map[string]meterFunc{
	"connect-rtt":          meter(bench.ConnectRTT, connectOverrides),
	"request-response":     meter(bench.RequestResponse, rrOverrides),
	"tcp-throughput":       meter(bench.TCPThroughput, tcpThroughputOverrides),
	"udp-jitter":           meter(bench.UDPJitter, udpJitterOverrides),
	"udp-sweep":            meter(bench.UDPSweep, udpSweepOverrides),
	"resources":            resourcesMeter,
	"reference-tools":      meter(bench.Reference, referenceOverrides),
	"speedlimit-response":  speedLimitResponse,
	"speedlimit-droppoint": speedLimitDropPoint,
	"speedlimit-scaling":   speedLimitScaling,
	"speedlimit-load":      speedLimitLoad,
	"scale":                scaleMeter,
}

// meterAliases are the meters' former names, which scenario files written before the
// rename still use. Parse replaces them with the current name, so meta.json records that.
var meterAliases = map[string]string{
	"tcpping":         "connect-rtt",
	"tcpstream":       "tcp-throughput",
	"udpjitter":       "udp-jitter",
	"udpsweep":        "udp-sweep",
	"reference":       "reference-tools",
	"speedlimit":      "speedlimit-response",
	"speedlimit-drop": "speedlimit-droppoint",
}

// meterName returns the current name of a meter a scenario names, which may be an alias.
func meterName(name string) string {
	if n, ok := meterAliases[name]; ok {
		return n
	}
	return name
}

// configuredMeters deploy a server of their own in one of an experiment's configurations;
// only they take, and they need, "configurations".
var configuredMeters = map[string]bool{
	"speedlimit-response": true, "speedlimit-droppoint": true, "speedlimit-scaling": true, "speedlimit-load": true,
}

// deployingMeters deploy the client and server services themselves, through Env.Services:
// their nodes start without them.
var deployingMeters = map[string]bool{"resources": true}

// meterTools names the external programs a meter runs, for meta.json's tool versions.
var meterTools = map[string][]string{"reference-tools": {"iperf3", "sockperf"}}

// MeterNames lists the meters a scenario can name.
func MeterNames() []string {
	var out []string
	for n := range meters {
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}

func decode[T any](raw json.RawMessage) (T, error) {
	var v T
	if len(raw) == 0 {
		return v, nil
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&v); err != nil {
		return v, fmt.Errorf("params: %w", err)
	}
	return v, nil
}

type validator interface{ Validate() error }

func bind[C validator](params any, cfg C, run func(context.Context, bench.Endpoints, C) ([]stats.Sample, error)) (any, runFunc, error) {
	if err := cfg.Validate(); err != nil {
		return nil, nil, err
	}
	return params, func(ctx context.Context, env Env) ([]stats.Sample, error) { return run(ctx, env.Endpoints, cfg) }, nil
}

// meter is a meterFunc that decodes the parameters straight into the meter's config C,
// applies the overrides to it, validates it and records it as the effective parameters.
func meter[C validator](run func(context.Context, bench.Endpoints, C) ([]stats.Sample, error), override func(*C, Overrides)) meterFunc {
	return func(raw json.RawMessage, o Overrides) (any, runFunc, error) {
		cfg, err := decode[C](raw)
		if err != nil {
			return nil, nil, err
		}
		override(&cfg, o)
		return bind(cfg, cfg, run)
	}
}

// connectOverrides turns --duration into the number of connects at the profile's interval.
func connectOverrides(c *bench.ConnectConfig, o Overrides) {
	if o.Duration > 0 && c.Interval > 0 {
		c.Count = int(math.Ceil(float64(o.Duration) / float64(c.Interval)))
		c.Keep = min(c.Keep, c.Count)
	}
}

// rrOverrides turns --duration into the number of paced round trips at the profile's
// interval; the busy count stays, as back-to-back round trips take no fixed time.
func rrOverrides(c *bench.RRConfig, o Overrides) {
	if o.Duration > 0 {
		iv := time.Duration(c.Interval)
		if iv == 0 {
			iv = 10 * time.Millisecond
		}
		c.PacedCount = int(math.Ceil(float64(o.Duration) / float64(iv)))
	}
}

func tcpThroughputOverrides(c *bench.TCPThroughputConfig, o Overrides) {
	if o.Duration > 0 {
		c.Duration = bench.Duration(o.Duration)
	}
}

func udpJitterOverrides(c *bench.UDPJitterConfig, o Overrides) {
	if o.Duration > 0 {
		c.Duration = bench.Duration(o.Duration)
	}
	if c.RxStamps == "" {
		c.RxStamps = bench.RxStampsUser // recorded in meta.json: it changes what the figures mean
	}
}

// udpSweepOverrides sets the time per rate and replaces the rate list.
func udpSweepOverrides(c *bench.UDPSweepConfig, o Overrides) {
	if o.Duration > 0 {
		c.PerRate = bench.Duration(o.Duration)
	}
	if len(o.Rates) > 0 {
		c.Rates = c.Rates[:0]
		for _, r := range o.Rates {
			c.Rates = append(c.Rates, bench.Rate(r))
		}
	}
}

// resourcesMeter runs bench.Resources on the job's services, which it deploys at the start of
// the load phase and removes at the start of cleanup (Riegel §4.5).
func resourcesMeter(raw json.RawMessage, o Overrides) (any, runFunc, error) {
	cfg, err := decode[bench.ResourcesConfig](raw)
	if err != nil {
		return nil, nil, err
	}
	resourcesOverrides(&cfg, o)
	if err := cfg.Validate(); err != nil {
		return nil, nil, err
	}
	return cfg, func(ctx context.Context, env Env) ([]stats.Sample, error) {
		lc := env.Services
		if lc == nil {
			lc = bench.Deployed(env.Endpoints)
		}
		return bench.Resources(ctx, lc, cfg)
	}, nil
}

// resourcesOverrides splits --duration in thirds: idle, load, cleanup.
func resourcesOverrides(c *bench.ResourcesConfig, o Overrides) {
	if o.Duration > 0 {
		third := bench.Duration(o.Duration / 3)
		c.Idle, c.Load, c.Cleanup = third, third, third
	}
}

// referenceOverrides sets the length of each tool run and of each stream of ours, the
// jitter streams' included.
func referenceOverrides(c *bench.ReferenceConfig, o Overrides) {
	if o.Duration > 0 {
		c.Duration = bench.Duration(o.Duration)
		c.JitterDuration = 0
	}
}

// SpeedLimitResponseParams are the speedlimit-response experiment's parameters (the thesis's
// experiment 1): the server's, then the client's. The client sends to the server's port.
type SpeedLimitResponseParams struct {
	SpeedLimitServerParams
	bench.SpeedLimitResponseConfig
}

func speedLimitResponse(raw json.RawMessage, o Overrides) (any, runFunc, error) {
	p, err := decode[SpeedLimitResponseParams](raw)
	if err != nil {
		return nil, nil, err
	}
	p.BPFStats = p.BPFStats || o.BPFStats
	p.SpeedLimitResponseConfig.Port = p.SpeedLimitServerParams.Port
	return withServer(p, p.SpeedLimitServerParams, p.SpeedLimitResponseConfig, bench.SpeedLimitResponse)
}

// SpeedLimitDropPointParams are the speedlimit-droppoint experiment's parameters (the thesis's
// experiment 2): the server's, then the client's.
type SpeedLimitDropPointParams struct {
	SpeedLimitServerParams
	bench.SpeedLimitDropPointConfig
}

func speedLimitDropPoint(raw json.RawMessage, o Overrides) (any, runFunc, error) {
	p, err := decode[SpeedLimitDropPointParams](raw)
	if err != nil {
		return nil, nil, err
	}
	p.BPFStats = p.BPFStats || o.BPFStats
	p.SpeedLimitDropPointConfig.Port = p.SpeedLimitServerParams.Port
	// meta.json says which search ran: results from before it was selectable ran the linear one.
	p.Search = cmp.Or(p.Search, bench.SearchGeometric)
	return withServer(p, p.SpeedLimitServerParams, p.SpeedLimitDropPointConfig, bench.SpeedLimitDropPoint)
}

// SpeedLimitScalingParams are the speedlimit-scaling experiment's parameters (the thesis's
// experiment 3): the server's, then the client's.
type SpeedLimitScalingParams struct {
	SpeedLimitServerParams
	bench.SpeedLimitScalingConfig
}

func speedLimitScaling(raw json.RawMessage, o Overrides) (any, runFunc, error) {
	p, err := decode[SpeedLimitScalingParams](raw)
	if err != nil {
		return nil, nil, err
	}
	p.BPFStats = p.BPFStats || o.BPFStats
	p.SpeedLimitScalingConfig.Port = p.SpeedLimitServerParams.Port
	return withServer(p, p.SpeedLimitServerParams, p.SpeedLimitScalingConfig, bench.SpeedLimitScaling)
}

// SpeedLimitLoadParams are the speedlimit-load experiment's parameters (open loop, ours):
// the server's, then the client's. Rates are requests per second; --duration sets the time
// per rate.
type SpeedLimitLoadParams struct {
	SpeedLimitServerParams
	bench.SpeedLimitLoadConfig
}

func speedLimitLoad(raw json.RawMessage, o Overrides) (any, runFunc, error) {
	p, err := decode[SpeedLimitLoadParams](raw)
	if err != nil {
		return nil, nil, err
	}
	p.BPFStats = p.BPFStats || o.BPFStats
	if o.Duration > 0 {
		p.PerRate = bench.Duration(o.Duration)
	}
	p.SpeedLimitLoadConfig.Port = p.SpeedLimitServerParams.Port
	return withServer(p, p.SpeedLimitServerParams, p.SpeedLimitLoadConfig, bench.SpeedLimitLoad)
}
