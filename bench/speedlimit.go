package bench

// This file is the client of the Weinhold speed-limit experiments (reference.md §4): N
// concurrent clients ("threads" in the thesis), each on an OS thread of its own with a
// connected UDP socket in ep.Client, sending GET_SPEED_LIMIT requests to ep.Target and
// waiting for each REPLY (closed loop), or sending on a fixed schedule (open loop).
//
// Times are wall-clock, CLOCK_MONOTONIC read right before the request is sent and right
// after its reply is received (the thesis timed CPU time with clock(), its defect). A request
// without a reply within Timeout — or refused with ICMP port unreachable — is a drop; the
// client then replaces its socket, so a late reply can never be taken for the next one's
// (replies carry nothing that tells requests apart).
//
// Cars leave: with Leave "each" (the default) a client sends OUT_OF_RANGE right after each
// reply (or timeout), so the server's car count is the number of cars between request and
// departure — at most the number of clients — and the formula's whole range is exercised.
// Leave "never" reproduces the thesis, whose clients never sent OUT_OF_RANGE: the count only
// grows, and beyond 100 cars every answer is 30 km/h. The OUT_OF_RANGE datagram is not timed
// but is part of a client's time for its M requests.
//
// Note: sending all of a client's OUT_OF_RANGE at the end of its run ("GET ... GET, then
// OUT_OF_RANGE") was considered and rejected: the server counts every GET as a car (the
// protocol has no car identity), so the count would grow to clients x requests during the
// run just as in the thesis, and a burst of that many datagrams at the end overflows the
// user-space server's socket.
//
// Raw rows: the exact per-client figures (median, stddev, time for M / M) are computed from
// every request, but response_time keeps at most Keep requests per client and repetition,
// every ceil(M/Keep)-th one (systematic sampling, so the kept ones spread over the whole run),
// so that the thesis's 120 x 10,000 x 96 requests do not become 115 M rows.
//
// Note: the clients use blocking syscalls on locked OS threads rather than the netpoller, so
// that a client is what a thread of the thesis's client was and its CPU time can be read
// from CLOCK_THREAD_CPUTIME_ID; on veth the kernel runs much of the round trip (bridge,
// XDP program, the reply's receive path) in the sender's context, so that CPU time is an
// upper bound of the client's own cost.

import (
	"context"
	"errors"
	"fmt"
	"math"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/edgebpf/edgebpf/internal/cpupin"
	"github.com/edgebpf/edgebpf/stats"
	"github.com/edgebpf/edgebpf/workloads/speedlimit/wire"
)

// When a client's cars leave the sign's range.
const (
	LeaveEach  = "each"
	LeaveNever = "never"
)

const (
	defaultSLClients  = 120
	defaultSLRequests = 10000
	defaultSLTimeout  = time.Second
	defaultSLKeep     = 1000
	maxSLClients      = 5000
	// maxGOMAXPROCS is the runtime's limit.
	maxGOMAXPROCS = 1024
)

// clientCPUUser is the part of stats.ClientCPU spent in user space: the client's own work,
// without the kernel's (which on veth includes much of the server's path, see above).
var clientCPUUser = stats.Metric{Name: stats.ClientCPU.Name + ":user", Unit: stats.ClientCPU.Unit, Better: stats.ClientCPU.Better}

// XUnitClients and XUnitRate label the curves of the speed-limit experiments.
const (
	XUnitClients = "clients"
	XUnitRate    = "req/s"
)

// slCommon are the fields every speed-limit meter shares.
type slCommon struct {
	port    uint16
	timeout time.Duration
	leave   string
	keep    int
}

func slCommonErrors(meter string, timeout time.Duration, leave string, keep int) []error {
	var errs []error
	if timeout < 0 {
		errs = append(errs, fmt.Errorf("%s: timeout %v is negative: give how long a client waits for a reply, e.g. 1s", meter, timeout))
	}
	if leave != "" && leave != LeaveEach && leave != LeaveNever {
		errs = append(errs, fmt.Errorf("%s: leave %q is unknown: choose each (a car leaves after its reply) or never (the thesis: the count only grows)", meter, leave))
	}
	if keep < 0 {
		errs = append(errs, fmt.Errorf("%s: keep %d is negative: give how many response times to keep per client, or 0 for the default %d", meter, keep, defaultSLKeep))
	}
	return errs
}

func slClientsError(meter, what string, n int) error {
	if n < 1 || n > maxSLClients {
		return fmt.Errorf("%s: %s %d is out of range: give 1 to %d clients", meter, what, n, maxSLClients)
	}
	return nil
}

// SpeedLimitResponseConfig configures SpeedLimitResponse. Zero fields take the defaults given with them.
type SpeedLimitResponseConfig struct {
	// Port is the server's UDP port. Default 5300. It is left out of the JSON form: a
	// scenario gives the port once, with the server's parameters, and the client follows.
	Port uint16 `json:"-"`
	// Clients is the number of concurrent clients. Default 120 (the thesis).
	Clients int `json:"clients"`
	// Requests is the number of GET_SPEED_LIMIT requests each client sends. Default 10000.
	Requests int `json:"requests"`
	// Timeout is how long a client waits for a reply before counting a drop. Default 1s.
	Timeout Duration `json:"timeout,omitempty"`
	// Leave is when cars leave: "each" (default) or "never" (the thesis).
	Leave string `json:"leave,omitempty"`
	// Keep is how many response_time samples to keep per client (every ceil(Requests/Keep)-th
	// request). Default 1000.
	Keep int `json:"keep,omitempty"`
}

func (c SpeedLimitResponseConfig) withDefaults() SpeedLimitResponseConfig {
	c.Port = cmp0(c.Port, wire.DefaultPort)
	c.Clients = cmp0(c.Clients, defaultSLClients)
	c.Requests = cmp0(c.Requests, defaultSLRequests)
	c.Timeout = cmp0(c.Timeout, Duration(defaultSLTimeout))
	c.Leave = cmp0(c.Leave, LeaveEach)
	c.Keep = cmp0(c.Keep, defaultSLKeep)
	return c
}

// Validate reports every field SpeedLimitResponse cannot use.
func (c SpeedLimitResponseConfig) Validate() error {
	const meter = "speed limit"
	errs := slCommonErrors(meter, time.Duration(c.Timeout), c.Leave, c.Keep)
	if c.Clients != 0 {
		errs = append(errs, slClientsError(meter, "clients", c.Clients))
	}
	if c.Requests < 0 {
		errs = append(errs, fmt.Errorf("%s: requests %d is negative: give the requests per client, or 0 for the default %d", meter, c.Requests, defaultSLRequests))
	}
	return errors.Join(errs...)
}

// SpeedLimitResponse is the thesis's experiment 1: Clients concurrent clients each send Requests
// GET_SPEED_LIMIT requests, one at a time, and time every one. It returns
//   - stats.ResponseTime per kept request (s; Seq numbers requests across clients, T is the
//     send time in s since the run began);
//   - per client (Seq is the client): stats.ClientMedian and stats.ClientStddev of all its
//     requests' times, and stats.MeanRequestTime, the thesis's aggregate: the time from
//     right before its first request to its last reply, divided by Requests;
//     MeanRequestTime only for clients whose every request was answered (a timeout would
//     add its wait);
//   - once: stats.Timeouts (requests without a reply), stats.AchievedRate (replies per
//     second over the run), stats.ClientCPU (the client threads' CPU time over the run's
//     wall time, in percent of one core) and "client_cpu:user", its user-space part.
//
// A reply that is not an 8-byte REPLY with a limit from 30 to 120 is an error, returned
// with the samples. When ctx ends it returns within about Timeout with the samples of the
// requests done and ctx.Err().
func SpeedLimitResponse(ctx context.Context, ep Endpoints, cfg SpeedLimitResponseConfig) ([]stats.Sample, error) {
	if err := errors.Join(checkUDPEndpoints(ep), cfg.Validate()); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	origin := udpNow()
	out, err := runSL(ctx, ep, slPlan{
		slCommon: slCommon{port: cfg.Port, timeout: time.Duration(cfg.Timeout), leave: cfg.Leave, keep: cfg.Keep},
		clients:  cfg.Clients, requests: cfg.Requests,
	})
	if out == nil {
		return nil, err
	}
	return out.samples(origin, "", "", true), err
}

// SpeedLimitDropPointConfig configures SpeedLimitDropPoint. Zero fields take the defaults.
type SpeedLimitDropPointConfig struct {
	// Port is as in SpeedLimitResponseConfig.
	Port uint16 `json:"-"`
	// Start is the number of clients the search starts with. Default 1.
	Start int `json:"start"`
	// Max is the most clients tried; a drop point equal to it means no drop up to it.
	// Default 1000.
	Max int `json:"max"`
	// Step is how many clients each start adds. Default 1 (the thesis).
	Step int `json:"step,omitempty"`
	// Requests per client per start. Default 10000 (the thesis).
	Requests int `json:"requests"`
	// Timeout per request. Default 1s.
	Timeout Duration `json:"timeout,omitempty"`
	// Pause between starts, for the server to return to a neutral state. Default 1s (the
	// thesis).
	Pause Duration `json:"pause,omitempty"`
	Leave string   `json:"leave,omitempty"`
}

func (c SpeedLimitDropPointConfig) withDefaults() SpeedLimitDropPointConfig {
	c.Port = cmp0(c.Port, wire.DefaultPort)
	c.Start = cmp0(c.Start, 1)
	c.Max = cmp0(c.Max, 1000)
	c.Step = cmp0(c.Step, 1)
	c.Requests = cmp0(c.Requests, defaultSLRequests)
	c.Timeout = cmp0(c.Timeout, Duration(defaultSLTimeout))
	c.Pause = cmp0(c.Pause, Duration(time.Second))
	c.Leave = cmp0(c.Leave, LeaveEach)
	return c
}

// Validate reports every field SpeedLimitDropPoint cannot use.
func (c SpeedLimitDropPointConfig) Validate() error {
	const meter = "speed-limit drop point"
	errs := slCommonErrors(meter, time.Duration(c.Timeout), c.Leave, 0)
	d := c.withDefaults()
	if c.Start != 0 {
		errs = append(errs, slClientsError(meter, "start", c.Start))
	}
	if c.Max != 0 {
		errs = append(errs, slClientsError(meter, "max", c.Max))
	}
	if d.Max < d.Start {
		errs = append(errs, fmt.Errorf("%s: max %d is below start %d: give a max of at least the start", meter, d.Max, d.Start))
	}
	if c.Step < 0 {
		errs = append(errs, fmt.Errorf("%s: step %d is negative: give how many clients each start adds, e.g. 1", meter, c.Step))
	}
	if c.Requests < 0 {
		errs = append(errs, fmt.Errorf("%s: requests %d is negative", meter, c.Requests))
	}
	if c.Pause < 0 {
		errs = append(errs, fmt.Errorf("%s: pause %v is negative", meter, c.Pause))
	}
	return errors.Join(errs...)
}

// SpeedLimitDropPoint is the thesis's experiment 2: it starts Start clients, each sending
// Requests requests, and after a pause starts Step more, until a request is dropped; that
// start is stopped at its first drop (the thesis killed the client). It returns one
// stats.DropPoint, the most clients that ran without a drop (the thesis's "one less than the
// number of threads"; Max if none dropped, Start-Step if the first start did), and per start
// the stats.Timeouts it saw, with X the number of clients.
func SpeedLimitDropPoint(ctx context.Context, ep Endpoints, cfg SpeedLimitDropPointConfig) ([]stats.Sample, error) {
	if err := errors.Join(checkUDPEndpoints(ep), cfg.Validate()); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	origin := udpNow()
	var samples []stats.Sample
	point := cfg.Max
	for n := cfg.Start; n <= cfg.Max; n += cfg.Step {
		if n > cfg.Start && sleepCtx(ctx, time.Duration(cfg.Pause)) != nil {
			return samples, ctx.Err()
		}
		out, err := runSL(ctx, ep, slPlan{
			slCommon: slCommon{port: cfg.Port, timeout: time.Duration(cfg.Timeout), leave: cfg.Leave, keep: 1},
			clients:  n, requests: cfg.Requests, stopOnDrop: true,
		})
		if out != nil {
			samples = append(samples, stats.Sample{Seq: n, T: udpSince(origin, out.end), X: strconv.Itoa(n), XUnit: XUnitClients,
				Metric: stats.Timeouts, Value: float64(out.failed())})
		}
		if err != nil {
			return samples, err
		}
		if out.failed() > 0 {
			point = n - cfg.Step
			break
		}
	}
	samples = append(samples, stats.Sample{T: udpSince(origin, udpNow()), Metric: stats.DropPoint, Value: float64(max(point, 0))})
	return samples, nil
}

// SpeedLimitScalingConfig configures SpeedLimitScaling.
type SpeedLimitScalingConfig struct {
	// Port, Timeout, Leave and Keep are as in SpeedLimitResponseConfig.
	Port uint16 `json:"-"`
	// Clients are the numbers of clients to run, in order. Required.
	Clients []int `json:"clients"`
	// Requests per client. Default 10000.
	Requests int      `json:"requests"`
	Timeout  Duration `json:"timeout,omitempty"`
	// Pause between runs. Default 1s.
	Pause Duration `json:"pause,omitempty"`
	Leave string   `json:"leave,omitempty"`
	Keep  int      `json:"keep,omitempty"`
	// Continue runs the remaining client counts after one with drops; by default the sweep
	// stops there, as the thesis's did.
	Continue bool `json:"continue,omitempty"`
}

func (c SpeedLimitScalingConfig) withDefaults() SpeedLimitScalingConfig {
	c.Port = cmp0(c.Port, wire.DefaultPort)
	c.Requests = cmp0(c.Requests, defaultSLRequests)
	c.Timeout = cmp0(c.Timeout, Duration(defaultSLTimeout))
	c.Pause = cmp0(c.Pause, Duration(time.Second))
	c.Leave = cmp0(c.Leave, LeaveEach)
	c.Keep = cmp0(c.Keep, defaultSLKeep)
	return c
}

// Validate reports every field SpeedLimitScaling cannot use.
func (c SpeedLimitScalingConfig) Validate() error {
	const meter = "speed-limit scaling"
	errs := slCommonErrors(meter, time.Duration(c.Timeout), c.Leave, c.Keep)
	if len(c.Clients) == 0 {
		errs = append(errs, fmt.Errorf("%s: no client counts: give the numbers of clients to run, e.g. [1, 10, 50, 100]", meter))
	}
	for _, n := range c.Clients {
		if err := slClientsError(meter, "client count", n); err != nil {
			errs = append(errs, err)
		}
	}
	if c.Requests < 0 {
		errs = append(errs, fmt.Errorf("%s: requests %d is negative", meter, c.Requests))
	}
	if c.Pause < 0 {
		errs = append(errs, fmt.Errorf("%s: pause %v is negative", meter, c.Pause))
	}
	return errors.Join(errs...)
}

// SpeedLimitScaling is the thesis's experiment 3: for each number of clients it runs them as
// SpeedLimitResponse does and returns SpeedLimitResponse's samples with X the number of clients (X unit
// "clients"), so that response time can be fitted against it. It stops after the first
// count that saw a drop unless Continue is set.
func SpeedLimitScaling(ctx context.Context, ep Endpoints, cfg SpeedLimitScalingConfig) ([]stats.Sample, error) {
	if err := errors.Join(checkUDPEndpoints(ep), cfg.Validate()); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	origin := udpNow()
	var samples []stats.Sample
	for i, n := range cfg.Clients {
		if i > 0 && sleepCtx(ctx, time.Duration(cfg.Pause)) != nil {
			return samples, ctx.Err()
		}
		out, err := runSL(ctx, ep, slPlan{
			slCommon: slCommon{port: cfg.Port, timeout: time.Duration(cfg.Timeout), leave: cfg.Leave, keep: cfg.Keep},
			clients:  n, requests: cfg.Requests,
		})
		if out != nil {
			samples = append(samples, out.samples(origin, strconv.Itoa(n), XUnitClients, true)...)
		}
		if err != nil {
			return samples, err
		}
		if out.failed() > 0 && !cfg.Continue {
			break
		}
	}
	return samples, nil
}

// SpeedLimitLoadConfig configures SpeedLimitLoad.
type SpeedLimitLoadConfig struct {
	// Port is as in SpeedLimitResponseConfig.
	Port uint16 `json:"-"`
	// Rates are the offered loads in requests per second, in order. Required.
	Rates []float64 `json:"rates"`
	// Clients share the load, each sending Rate/Clients requests per second. Default 32.
	Clients int `json:"clients,omitempty"`
	// PerRate is how long each rate is offered. Default 2s.
	PerRate Duration `json:"per_rate"`
	// Pause between rates. Default 500ms.
	Pause   Duration `json:"pause,omitempty"`
	Timeout Duration `json:"timeout,omitempty"`
	Leave   string   `json:"leave,omitempty"`
	Keep    int      `json:"keep,omitempty"`
}

func (c SpeedLimitLoadConfig) withDefaults() SpeedLimitLoadConfig {
	c.Port = cmp0(c.Port, wire.DefaultPort)
	c.Clients = cmp0(c.Clients, 32)
	c.PerRate = cmp0(c.PerRate, Duration(2*time.Second))
	c.Pause = cmp0(c.Pause, Duration(500*time.Millisecond))
	c.Timeout = cmp0(c.Timeout, Duration(defaultSLTimeout))
	c.Leave = cmp0(c.Leave, LeaveEach)
	c.Keep = cmp0(c.Keep, defaultSLKeep)
	return c
}

// Validate reports every field SpeedLimitLoad cannot use.
func (c SpeedLimitLoadConfig) Validate() error {
	const meter = "speed-limit load"
	errs := slCommonErrors(meter, time.Duration(c.Timeout), c.Leave, c.Keep)
	if len(c.Rates) == 0 {
		errs = append(errs, fmt.Errorf("%s: no rates: give the offered loads in requests per second, e.g. [10000, 50000]", meter))
	}
	for _, r := range c.Rates {
		if math.IsNaN(r) || math.IsInf(r, 0) || r <= 0 || r > 10e6 {
			errs = append(errs, fmt.Errorf("%s: rate %v req/s is out of range: give 1 to 10e6 requests per second", meter, r))
		}
	}
	if c.Clients != 0 {
		errs = append(errs, slClientsError(meter, "clients", c.Clients))
	}
	if c.PerRate < 0 || c.Pause < 0 {
		errs = append(errs, fmt.Errorf("%s: per_rate %v and pause %v must not be negative", meter, c.PerRate, c.Pause))
	}
	return errors.Join(errs...)
}

// SpeedLimitLoad is the open-loop measurement the thesis lacked: for each offered rate the
// clients send requests on a fixed schedule (client k's i-th request is due at
// start + (i + k/Clients) * Clients/Rate) for PerRate, each with one request outstanding.
// A request that came due while its client still waited for the previous reply is timed
// from when it was due, not from when it went out, so a server that falls behind shows its
// queue in the response times instead of silently slowing the clients down (coordinated
// omission, corrected as wrk2 does); a request whose client was free is timed from its send,
// so a client thread waking up late does not count against the server. Requests still unsent at the
// end are lost. For each rate, with X the rate in req/s: stats.ResponseTime per kept
// request, stats.AchievedRate (replies per second), stats.Loss (percent of the scheduled
// requests without a reply), stats.Timeouts and stats.ClientCPU.
func SpeedLimitLoad(ctx context.Context, ep Endpoints, cfg SpeedLimitLoadConfig) ([]stats.Sample, error) {
	if err := errors.Join(checkUDPEndpoints(ep), cfg.Validate()); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	origin := udpNow()
	var samples []stats.Sample
	for i, rate := range cfg.Rates {
		if i > 0 && sleepCtx(ctx, time.Duration(cfg.Pause)) != nil {
			return samples, ctx.Err()
		}
		out, err := runSL(ctx, ep, slPlan{
			slCommon: slCommon{port: cfg.Port, timeout: time.Duration(cfg.Timeout), leave: cfg.Leave, keep: cfg.Keep},
			clients:  cfg.Clients, rate: rate, duration: time.Duration(cfg.PerRate),
		})
		if out != nil {
			x := strconv.FormatFloat(rate, 'f', -1, 64)
			samples = append(samples, out.samples(origin, x, XUnitRate, false)...)
			samples = append(samples, stats.Sample{T: udpSince(origin, out.end), X: x, XUnit: XUnitRate, Metric: stats.Loss, Value: out.lossPercent()})
		}
		if err != nil {
			return samples, err
		}
	}
	return samples, nil
}

// slPlan is one run of clients: closed loop with requests each, or open loop at rate for
// duration when rate > 0.
type slPlan struct {
	slCommon
	clients    int
	requests   int
	stopOnDrop bool
	rate       float64
	duration   time.Duration
}

// slKept is one kept request.
type slKept struct {
	seq  int
	sent int64 // CLOCK_MONOTONIC ns (the due time in open loop)
	took int64 // ns
}

// slClientResult is what one client measured. Times are CLOCK_MONOTONIC ns.
type slClientResult struct {
	times     []float64 // s, every replied request, in order
	kept      []slKept
	scheduled int // open loop: requests due before the end
	sent      int
	timeouts  int
	refused   int
	bad       int
	badReply  string
	start     int64
	end       int64
	cpu       cpuTime
}

// slOutcome is one run.
type slOutcome struct {
	plan    slPlan
	clients []*slClientResult
	start   int64
	end     int64
	wall    time.Duration
}

func (o *slOutcome) failed() int {
	n := 0
	for _, c := range o.clients {
		n += c.timeouts + c.refused
	}
	return n
}

func (o *slOutcome) replies() int {
	n := 0
	for _, c := range o.clients {
		n += len(c.times)
	}
	return n
}

func (o *slOutcome) lossPercent() float64 {
	sched := 0
	for _, c := range o.clients {
		sched += c.scheduled
	}
	if sched == 0 {
		return 0
	}
	return 100 * float64(max(sched-o.replies(), 0)) / float64(sched)
}

// samples turns a run into samples; perClient adds the per-client figures.
func (o *slOutcome) samples(origin int64, x, xUnit string, perClient bool) []stats.Sample {
	var out []stats.Sample
	add := func(seq int, t float64, m stats.Metric, v float64) {
		out = append(out, stats.Sample{Seq: seq, T: t, X: x, XUnit: xUnit, Metric: m, Value: v})
	}
	for _, c := range o.clients {
		for _, k := range c.kept {
			add(k.seq, udpSince(origin, k.sent), stats.ResponseTime, float64(k.took)/1e9)
		}
	}
	if perClient {
		for i, c := range o.clients {
			if len(c.times) == 0 {
				continue
			}
			t := udpSince(origin, c.end)
			s := stats.Summarize(c.times)
			add(i, t, stats.ClientMedian, s.Median)
			add(i, t, stats.ClientStddev, s.Stddev)
			if c.timeouts+c.refused == 0 && len(c.times) == o.plan.requests {
				add(i, t, stats.MeanRequestTime, float64(c.end-c.start)/1e9/float64(o.plan.requests))
			}
		}
	}
	t := udpSince(origin, o.end)
	add(0, t, stats.Timeouts, float64(o.failed()))
	if o.wall > 0 {
		add(0, t, stats.AchievedRate, float64(o.replies())/o.wall.Seconds())
		var cpu cpuTime
		for _, c := range o.clients {
			cpu.user += c.cpu.user
			cpu.sys += c.cpu.sys
		}
		add(0, t, stats.ClientCPU, 100*(cpu.user+cpu.sys).Seconds()/o.wall.Seconds())
		add(0, t, clientCPUUser, 100*cpu.user.Seconds()/o.wall.Seconds())
	}
	return out
}

// slClient is one client: its socket (replaced after a drop) and its result.
type slClient struct {
	ns     NS
	target unix.Sockaddr
	mu     sync.Mutex // guards fd against the canceller's shutdown
	fd     int
	res    slClientResult
}

// open creates the client's connected socket in its namespace.
func (c *slClient) open(timeout time.Duration) error {
	var fd int
	err := c.ns.Do(func() error {
		var err error
		fd, err = unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, unix.IPPROTO_UDP)
		if err != nil {
			return fmt.Errorf("create udp socket: %w", err)
		}
		if err := unix.Connect(fd, c.target); err != nil {
			unix.Close(fd)
			return fmt.Errorf("connect udp socket: %w", err)
		}
		return nil
	})
	if err != nil {
		return err
	}
	if err := setTimeout(fd, unix.SO_RCVTIMEO, timeout); err != nil {
		unix.Close(fd)
		return err
	}
	c.mu.Lock()
	old := c.fd
	c.fd = fd
	c.mu.Unlock()
	if old >= 0 {
		unix.Close(old)
	}
	return nil
}

func (c *slClient) shutdown() {
	c.mu.Lock()
	if c.fd >= 0 {
		_ = unix.Shutdown(c.fd, unix.SHUT_RDWR)
	}
	c.mu.Unlock()
}

func (c *slClient) close() {
	c.mu.Lock()
	if c.fd >= 0 {
		unix.Close(c.fd)
		c.fd = -1
	}
	c.mu.Unlock()
}

// runSL runs one plan. It returns the outcome so far with ctx.Err() when ctx ends, and an
// error naming the first wrong reply if any came.
func runSL(ctx context.Context, ep Endpoints, p slPlan) (*slOutcome, error) {
	cl := make([]*slClient, p.clients)
	closeAll := func() {
		for _, c := range cl {
			if c != nil {
				c.close()
			}
		}
	}
	for i := range cl {
		// A sockaddr of its own per client: unix.Connect writes into it, and clients
		// reconnect concurrently.
		_, target := sockaddr(ep.Target, p.port)
		cl[i] = &slClient{ns: ep.Client, target: target, fd: -1}
		if err := cl[i].open(p.timeout); err != nil {
			closeAll()
			return nil, fmt.Errorf("speed-limit client %d to %s port %d: %w", i, ep.Target, p.port, err)
		}
	}
	defer closeAll()

	// Every client blocks in syscalls on a thread of its own, as the thesis's threads did.
	// The Go runtime lets only GOMAXPROCS threads run Go code: with 2 Ps, a thread returning
	// from its recv waits for one (sysmon hands Ps over only every 20 µs to 10 ms), which
	// measured as stalls of tens of milliseconds. With a P per client the kernel alone
	// schedules the clients, as it schedules C threads.
	if prev := runtime.GOMAXPROCS(0); prev < p.clients+2 {
		runtime.GOMAXPROCS(min(p.clients+prev, maxGOMAXPROCS))
		defer runtime.GOMAXPROCS(prev)
	}
	var stop atomic.Bool
	ready := make(chan struct{}, p.clients)
	begin := make(chan struct{})
	var start int64 // written before begin is closed
	var wg sync.WaitGroup
	errs := make([]error, p.clients)
	for i, c := range cl {
		wg.Go(func() {
			defer cpupin.Thread(ctx, cpupin.Client)()
			errs[i] = c.run(i, p, ready, begin, &start, &stop)
		})
	}
	for range p.clients {
		<-ready
	}
	watchDone := make(chan struct{})
	go func() {
		select {
		case <-ctx.Done():
			stop.Store(true)
			for _, c := range cl {
				c.shutdown()
			}
		case <-watchDone:
		}
	}()
	start = udpNow()
	close(begin)
	wg.Wait()
	close(watchDone)
	end := start
	for _, c := range cl {
		end = max(end, c.res.end)
	}
	o := &slOutcome{plan: p, start: start, end: end, wall: time.Duration(end - start)}
	for _, c := range cl {
		o.clients = append(o.clients, &c.res)
	}
	if ctx.Err() != nil {
		return o, ctx.Err()
	}
	if err := errors.Join(errs...); err != nil {
		return o, fmt.Errorf("speed-limit client to %s port %d: %w", ep.Target, p.port, err)
	}
	bad, first := 0, ""
	for _, c := range o.clients {
		bad += c.bad
		if first == "" {
			first = c.badReply
		}
	}
	if bad > 0 {
		return o, fmt.Errorf("speed-limit server %s port %d answered %d requests wrongly (first: %s)", ep.Target, p.port, bad, first)
	}
	return o, nil
}

// run is one client's loop, on a locked OS thread so that its CPU time can be read.
func (c *slClient) run(idx int, p slPlan, ready chan<- struct{}, begin <-chan struct{}, startAt *int64, stop *atomic.Bool) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	// A paced client wakes up on time: the default timer slack of 50 µs would add up to that
	// to every wake-up. Restored to the default (0) before the thread goes back to the runtime.
	_ = unix.Prctl(unix.PR_SET_TIMERSLACK, 1, 0, 0, 0)
	defer unix.Prctl(unix.PR_SET_TIMERSLACK, 0, 0, 0, 0)
	res := &c.res
	cpu0 := threadCPU()
	ready <- struct{}{}
	<-begin
	start := *startAt
	defer func() { res.cpu = threadCPU().sub(cpu0) }()

	get := wire.Message{Op: wire.GetSpeedLimit}.Append(nil)
	leave := wire.Message{Op: wire.OutOfRange}.Append(nil)
	buf := make([]byte, 64)
	open := p.rate > 0
	var interval, phase, end, giveUp int64
	n := p.requests
	if open {
		interval = int64(float64(p.clients) / p.rate * 1e9)
		phase = int64(float64(idx) / float64(p.clients) * float64(interval))
		end = start + p.duration.Nanoseconds()
		giveUp = end + p.timeout.Nanoseconds()
		n = 0
		if end > start+phase {
			n = int((end - start - phase + interval - 1) / interval)
		}
		res.scheduled = n
	}
	stride := 1
	if p.keep > 0 && n > p.keep {
		stride = (n + p.keep - 1) / p.keep
	}
	res.times = make([]float64, 0, n)
	res.start = udpNow()
	res.end = res.start
	prevDone := start // when the previous request's reply (or timeout) came
	for i := 0; i < n && !stop.Load(); i++ {
		var t0 int64
		if open {
			due := start + phase + int64(i)*interval
			now := udpNow()
			if now > giveUp {
				break
			}
			if due-now > int64(20*time.Microsecond) {
				udpSleepUntil(due)
			}
			t0 = udpNow()
			// Still waiting for the server when this request was due: the wait is the
			// server's queue and counts (coordinated omission). A client merely waking
			// up late is its own delay and does not.
			if prevDone > due {
				t0 = due
			}
		} else {
			t0 = udpNow()
		}
		res.sent++
		ok, err := c.exchange(get, buf, t0, p.timeout)
		t1 := udpNow()
		prevDone = t1
		if err != nil {
			return err
		}
		if ok {
			took := t1 - t0
			res.times = append(res.times, float64(took)/1e9)
			res.end = t1
			if i%stride == 0 {
				res.kept = append(res.kept, slKept{seq: idx*n + i, sent: t0, took: took})
			}
		} else if p.stopOnDrop {
			stop.Store(true)
		}
		if p.leave == LeaveEach {
			// The car drives on, answered or not. A lost OUT_OF_RANGE leaves it counted.
			_, _ = unix.Write(c.fd, leave)
		}
		if !ok && !stop.Load() {
			// A late reply must never be taken for the next request's: a fresh socket.
			if err := c.open(p.timeout); err != nil {
				return err
			}
		}
	}
	if res.end == res.start {
		res.end = udpNow()
	}
	return nil
}

// exchange sends one request and waits for its reply. ok is false for a drop (timeout or
// refused), counted in the result; err is a failure of the client itself.
func (c *slClient) exchange(req, buf []byte, t0 int64, timeout time.Duration) (ok bool, err error) {
	res := &c.res
	fd := c.fd
	if _, err := unix.Write(fd, req); err != nil {
		switch {
		case errors.Is(err, unix.ECONNREFUSED):
			res.refused++
			return false, nil
		case errors.Is(err, unix.ENOBUFS), errors.Is(err, unix.EAGAIN), errors.Is(err, unix.EINTR):
			res.timeouts++
			return false, nil
		case errors.Is(err, unix.EPIPE), errors.Is(err, unix.EBADF):
			return false, nil // shut down by the canceller
		}
		return false, fmt.Errorf("send: %w", err)
	}
	for {
		n, err := unix.Read(fd, buf)
		switch {
		case err == nil && n == 0:
			return false, nil // shut down by the canceller
		case err == nil:
			msg, derr := wire.Decode(buf[:n])
			if derr != nil || msg.Op != wire.Reply || msg.Value < wire.MinLimit || msg.Value > wire.MaxLimit {
				res.bad++
				if res.badReply == "" {
					res.badReply = fmt.Sprintf("%d bytes % x", n, buf[:min(n, 16)])
				}
				return false, nil
			}
			return true, nil
		case errors.Is(err, unix.EINTR):
			if time.Duration(udpNow()-t0) < timeout {
				continue
			}
			res.timeouts++
			return false, nil
		case errors.Is(err, unix.EAGAIN):
			res.timeouts++
			return false, nil
		case errors.Is(err, unix.ECONNREFUSED):
			res.refused++
			return false, nil
		}
		return false, fmt.Errorf("receive: %w", err)
	}
}

// threadCPU returns the calling thread's CPU time in user space and in the kernel.
func threadCPU() cpuTime {
	var ru unix.Rusage
	_ = unix.Getrusage(unix.RUSAGE_THREAD, &ru)
	return cpuTime{user: time.Duration(unix.TimevalToNsec(ru.Utime)), sys: time.Duration(unix.TimevalToNsec(ru.Stime))}
}

// cpuTime is CPU time spent in user space and in the kernel.
type cpuTime struct{ user, sys time.Duration }

func (a cpuTime) sub(b cpuTime) cpuTime { return cpuTime{user: a.user - b.user, sys: a.sys - b.sys} }

// cmp0 returns v, or def if v is its type's zero value.
func cmp0[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}

// SpeedLimitSummary condenses speed-limit samples for a person: the response times'
// percentiles, the clients' median of the thesis's aggregate, the timeouts and the achieved
// rate. The CLI prints it; experiments keep the raw samples instead.
type SpeedLimitSummary struct {
	Requests        int     `json:"requests"`
	Timeouts        int     `json:"timeouts"`
	P50             float64 `json:"p50_s"`
	P90             float64 `json:"p90_s"`
	P99             float64 `json:"p99_s"`
	Max             float64 `json:"max_s"`
	Mean            float64 `json:"mean_s"`
	ClientMedian    float64 `json:"client_median_s"`     // median over clients of their median
	ClientStddev    float64 `json:"client_stddev_s"`     // median over clients of their stddev
	MeanRequestTime float64 `json:"mean_request_time_s"` // median over clients of time for M / M
	AchievedRate    float64 `json:"achieved_rate"`       // req/s
	ClientCPU       float64 `json:"client_cpu_percent"`
	ClientCPUUser   float64 `json:"client_cpu_user_percent"`
	Loss            float64 `json:"loss_percent,omitempty"`
}

// SummarizeSpeedLimit condenses the samples of one SpeedLimitResponse or SpeedLimitLoad run (one X).
func SummarizeSpeedLimit(samples []stats.Sample) SpeedLimitSummary {
	var s SpeedLimitSummary
	by := map[string][]float64{}
	for _, x := range samples {
		by[x.Metric.Name] = append(by[x.Metric.Name], x.Value)
	}
	rt := stats.Summarize(by[stats.ResponseTime.Name])
	s.Requests, s.P50, s.P90, s.P99, s.Max, s.Mean = rt.N, rt.Median, rt.P90, rt.P99, rt.Max, rt.Mean
	med := func(name string) float64 {
		if len(by[name]) == 0 {
			return 0
		}
		return stats.Summarize(by[name]).Median
	}
	s.ClientMedian, s.ClientStddev, s.MeanRequestTime = med(stats.ClientMedian.Name), med(stats.ClientStddev.Name), med(stats.MeanRequestTime.Name)
	for _, v := range by[stats.Timeouts.Name] {
		s.Timeouts += int(v)
	}
	s.AchievedRate, s.ClientCPU, s.ClientCPUUser = med(stats.AchievedRate.Name), med(stats.ClientCPU.Name), med(clientCPUUser.Name)
	s.Loss = med(stats.Loss.Name)
	return s
}
