package scenarios

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"slices"
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

// Plan is an experiment resolved for one profile: the meter to run, how often, and with
// which parameters.
type Plan struct {
	Experiment string
	Meter      string
	Reps       int
	Params     any // the effective parameters, as recorded in meta.json
	run        runFunc
}

// Env is what one repetition of a meter runs against: the endpoints every meter uses and,
// for the meters that deploy a server of their own (the speed-limit experiments), the node,
// its instances and the server configuration to deploy.
type Env struct {
	bench.Endpoints
	// Configuration is the server configuration of an experiment with configurations
	// (userspace, mixed, ebpf); empty otherwise.
	Configuration  string
	Node           *netsetup.Node
	Client, Server *netsetup.Instance
	// Record, if set, receives the settings a meter's server ran with (such as the XDP
	// mode), for meta.json.
	Record func(settings map[string]string)
	// programs, if set, reads the run statistics of the data plane's BPF programs.
	programs dataplanes.ProgramRunner
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
	m, ok := meters[e.Meter]
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
	return Plan{Experiment: e.Name, Meter: e.Meter, Reps: reps, Params: params, run: run}, nil
}

type runFunc = func(context.Context, Env) ([]stats.Sample, error)

// A meter decodes its parameters, applies overrides, validates, and returns the effective
// parameters with a function that runs it.
type meterFunc func(raw json.RawMessage, o Overrides) (any, runFunc, error)

var meters = map[string]meterFunc{
	"tcpping":            tcpPing,
	"tcpstream":          tcpStream,
	"udpjitter":          udpJitter,
	"udpsweep":           udpSweep,
	"resources":          resources,
	"reference":          reference,
	"speedlimit":         speedLimit,
	"speedlimit-drop":    speedLimitDrop,
	"speedlimit-scaling": speedLimitScaling,
	"speedlimit-load":    speedLimitLoad,
}

// configuredMeters deploy a server of their own in one of an experiment's configurations;
// only they take, and they need, "configurations".
var configuredMeters = map[string]bool{
	"speedlimit": true, "speedlimit-drop": true, "speedlimit-scaling": true, "speedlimit-load": true,
}

// meterTools names the external programs a meter runs, for meta.json's tool versions.
var meterTools = map[string][]string{"reference": {"iperf3", "sockperf"}}

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

// TCPPingParams are the latency experiment's parameters.
type TCPPingParams struct {
	Port     uint16   `json:"port,omitempty"`
	Count    int      `json:"count"`
	Keep     int      `json:"keep,omitempty"`
	Interval Duration `json:"interval"`
	Timeout  Duration `json:"timeout,omitempty"`
}

func tcpPing(raw json.RawMessage, o Overrides) (any, runFunc, error) {
	p, err := decode[TCPPingParams](raw)
	if err != nil {
		return nil, nil, err
	}
	if o.Duration > 0 && p.Interval > 0 {
		p.Count = int(math.Ceil(float64(o.Duration) / float64(p.Interval)))
		p.Keep = min(p.Keep, p.Count)
	}
	cfg := bench.TCPPingConfig{Port: p.Port, Count: p.Count, Keep: p.Keep, Interval: time.Duration(p.Interval), Timeout: time.Duration(p.Timeout)}
	return bind(p, cfg, bench.TCPPing)
}

// TCPStreamParams are the throughput experiment's parameters.
type TCPStreamParams struct {
	Port     uint16   `json:"port,omitempty"`
	Duration Duration `json:"duration"`
	Interval Duration `json:"interval"`
	Streams  int      `json:"streams,omitempty"`
	Rate     Rate     `json:"rate,omitempty"`
	Omit     Duration `json:"omit,omitempty"`
}

func tcpStream(raw json.RawMessage, o Overrides) (any, runFunc, error) {
	p, err := decode[TCPStreamParams](raw)
	if err != nil {
		return nil, nil, err
	}
	if o.Duration > 0 {
		p.Duration = Duration(o.Duration)
	}
	cfg := bench.TCPStreamConfig{Port: p.Port, Duration: time.Duration(p.Duration), Interval: time.Duration(p.Interval),
		Streams: p.Streams, Rate: float64(p.Rate), Omit: time.Duration(p.Omit)}
	return bind(p, cfg, bench.TCPStream)
}

// UDPJitterParams are the jitter experiment's parameters.
type UDPJitterParams struct {
	Port     uint16   `json:"port,omitempty"`
	Rate     Rate     `json:"rate"`
	Size     int      `json:"size,omitempty"`
	Duration Duration `json:"duration"`
	// RxStamps is where receive times are taken: "user" (the default) or "kernel"
	// (bench.UDPJitterConfig.RxStamps).
	RxStamps string `json:"rx_stamps,omitempty"`
}

func udpJitter(raw json.RawMessage, o Overrides) (any, runFunc, error) {
	p, err := decode[UDPJitterParams](raw)
	if err != nil {
		return nil, nil, err
	}
	if o.Duration > 0 {
		p.Duration = Duration(o.Duration)
	}
	if p.RxStamps == "" {
		p.RxStamps = bench.RxStampsUser // recorded in meta.json: it changes what the figures mean
	}
	cfg := bench.UDPJitterConfig{Port: p.Port, Rate: float64(p.Rate), Size: p.Size, Duration: time.Duration(p.Duration), RxStamps: p.RxStamps}
	return bind(p, cfg, bench.UDPJitter)
}

// UDPSweepParams are the bottleneck experiment's parameters.
type UDPSweepParams struct {
	Port          uint16   `json:"port,omitempty"`
	Rates         []Rate   `json:"rates"`
	Size          int      `json:"size,omitempty"`
	PerRate       Duration `json:"per_rate"`
	Pause         Duration `json:"pause,omitempty"`
	MaxOWDSamples int      `json:"max_owd_samples,omitempty"`
}

func udpSweep(raw json.RawMessage, o Overrides) (any, runFunc, error) {
	p, err := decode[UDPSweepParams](raw)
	if err != nil {
		return nil, nil, err
	}
	if o.Duration > 0 {
		p.PerRate = Duration(o.Duration)
	}
	if len(o.Rates) > 0 {
		p.Rates = p.Rates[:0]
		for _, r := range o.Rates {
			p.Rates = append(p.Rates, Rate(r))
		}
	}
	rates := make([]float64, len(p.Rates))
	for i, r := range p.Rates {
		rates[i] = float64(r)
	}
	cfg := bench.UDPSweepConfig{Port: p.Port, Rates: rates, Size: p.Size, PerRate: time.Duration(p.PerRate),
		Pause: time.Duration(p.Pause), MaxOWDSamples: p.MaxOWDSamples}
	return bind(p, cfg, bench.UDPSweep)
}

// ResourcesParams are the CPU/RAM experiment's parameters.
type ResourcesParams struct {
	Port      uint16   `json:"port,omitempty"`
	Idle      Duration `json:"idle"`
	Load      Duration `json:"load"`
	Cleanup   Duration `json:"cleanup"`
	Interval  Duration `json:"interval"`
	LoadRate  Rate     `json:"load_rate"`
	Processes []string `json:"processes,omitempty"`
}

func resources(raw json.RawMessage, o Overrides) (any, runFunc, error) {
	p, err := decode[ResourcesParams](raw)
	if err != nil {
		return nil, nil, err
	}
	if o.Duration > 0 {
		third := Duration(o.Duration / 3)
		p.Idle, p.Load, p.Cleanup = third, third, third
	}
	cfg := bench.ResourcesConfig{Port: p.Port, Idle: time.Duration(p.Idle), Load: time.Duration(p.Load),
		Cleanup: time.Duration(p.Cleanup), Interval: time.Duration(p.Interval), LoadRate: float64(p.LoadRate), Processes: p.Processes}
	return bind(p, cfg, bench.Resources)
}

// ReferenceParams are the calibration experiment's parameters: iperf3 and sockperf against
// edgebpf's own meters on the same path.
type ReferenceParams struct {
	Port         uint16   `json:"port,omitempty"`
	Rounds       int      `json:"rounds"`
	Duration     Duration `json:"duration"`
	Interval     Duration `json:"interval,omitempty"`
	PingCount    int      `json:"ping_count,omitempty"`
	PingInterval Duration `json:"ping_interval,omitempty"`
	JitterRate   Rate     `json:"jitter_rate,omitempty"`
	Size         int      `json:"size,omitempty"`
}

func reference(raw json.RawMessage, o Overrides) (any, runFunc, error) {
	p, err := decode[ReferenceParams](raw)
	if err != nil {
		return nil, nil, err
	}
	if o.Duration > 0 {
		p.Duration = Duration(o.Duration)
	}
	cfg := bench.ReferenceConfig{Port: p.Port, Rounds: p.Rounds, Duration: time.Duration(p.Duration), Interval: time.Duration(p.Interval),
		PingCount: p.PingCount, PingInterval: time.Duration(p.PingInterval), JitterRate: float64(p.JitterRate), Size: p.Size}
	return bind(p, cfg, bench.Reference)
}

// SpeedLimitParams are the speedlimit-response experiment's parameters (the thesis's
// experiment 1).
type SpeedLimitParams struct {
	SpeedLimitServerParams
	Clients  int      `json:"clients"`
	Requests int      `json:"requests"`
	Timeout  Duration `json:"timeout,omitempty"`
	Leave    string   `json:"leave,omitempty"`
	Keep     int      `json:"keep,omitempty"`
}

func speedLimit(raw json.RawMessage, o Overrides) (any, runFunc, error) {
	p, err := decode[SpeedLimitParams](raw)
	if err != nil {
		return nil, nil, err
	}
	p.BPFStats = p.BPFStats || o.BPFStats
	cfg := bench.SpeedLimitConfig{Port: p.Port, Clients: p.Clients, Requests: p.Requests, Timeout: time.Duration(p.Timeout),
		Leave: p.Leave, Keep: p.Keep}
	return withServer(p, p.SpeedLimitServerParams, cfg, bench.SpeedLimit)
}

// SpeedLimitDropParams are the speedlimit-droppoint experiment's parameters (the thesis's
// experiment 2).
type SpeedLimitDropParams struct {
	SpeedLimitServerParams
	Start    int      `json:"start"`
	Max      int      `json:"max"`
	Step     int      `json:"step,omitempty"`
	Requests int      `json:"requests"`
	Timeout  Duration `json:"timeout,omitempty"`
	Pause    Duration `json:"pause,omitempty"`
	Leave    string   `json:"leave,omitempty"`
}

func speedLimitDrop(raw json.RawMessage, o Overrides) (any, runFunc, error) {
	p, err := decode[SpeedLimitDropParams](raw)
	if err != nil {
		return nil, nil, err
	}
	p.BPFStats = p.BPFStats || o.BPFStats
	cfg := bench.SpeedLimitDropConfig{Port: p.Port, Start: p.Start, Max: p.Max, Step: p.Step, Requests: p.Requests,
		Timeout: time.Duration(p.Timeout), Pause: time.Duration(p.Pause), Leave: p.Leave}
	return withServer(p, p.SpeedLimitServerParams, cfg, bench.SpeedLimitDropPoint)
}

// SpeedLimitScalingParams are the speedlimit-scaling experiment's parameters (the thesis's
// experiment 3).
type SpeedLimitScalingParams struct {
	SpeedLimitServerParams
	Clients  []int    `json:"clients"`
	Requests int      `json:"requests"`
	Timeout  Duration `json:"timeout,omitempty"`
	Pause    Duration `json:"pause,omitempty"`
	Leave    string   `json:"leave,omitempty"`
	Keep     int      `json:"keep,omitempty"`
	Continue bool     `json:"continue,omitempty"`
}

func speedLimitScaling(raw json.RawMessage, o Overrides) (any, runFunc, error) {
	p, err := decode[SpeedLimitScalingParams](raw)
	if err != nil {
		return nil, nil, err
	}
	p.BPFStats = p.BPFStats || o.BPFStats
	cfg := bench.SpeedLimitScalingConfig{Port: p.Port, Clients: p.Clients, Requests: p.Requests, Timeout: time.Duration(p.Timeout),
		Pause: time.Duration(p.Pause), Leave: p.Leave, Keep: p.Keep, Continue: p.Continue}
	return withServer(p, p.SpeedLimitServerParams, cfg, bench.SpeedLimitScaling)
}

// SpeedLimitLoadParams are the speedlimit-load experiment's parameters (open loop, ours).
// Rates are requests per second; --duration sets the time per rate.
type SpeedLimitLoadParams struct {
	SpeedLimitServerParams
	Rates   []float64 `json:"rates"`
	Clients int       `json:"clients,omitempty"`
	PerRate Duration  `json:"per_rate"`
	Pause   Duration  `json:"pause,omitempty"`
	Timeout Duration  `json:"timeout,omitempty"`
	Leave   string    `json:"leave,omitempty"`
	Keep    int       `json:"keep,omitempty"`
}

func speedLimitLoad(raw json.RawMessage, o Overrides) (any, runFunc, error) {
	p, err := decode[SpeedLimitLoadParams](raw)
	if err != nil {
		return nil, nil, err
	}
	p.BPFStats = p.BPFStats || o.BPFStats
	if o.Duration > 0 {
		p.PerRate = Duration(o.Duration)
	}
	cfg := bench.SpeedLimitLoadConfig{Port: p.Port, Rates: p.Rates, Clients: p.Clients, PerRate: time.Duration(p.PerRate),
		Pause: time.Duration(p.Pause), Timeout: time.Duration(p.Timeout), Leave: p.Leave, Keep: p.Keep}
	return withServer(p, p.SpeedLimitServerParams, cfg, bench.SpeedLimitLoad)
}
