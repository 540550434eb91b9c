package bench

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"
	"time"

	"github.com/edgebpf/edgebpf/stats"
	"github.com/edgebpf/edgebpf/workloads/speedlimit/wire"
)

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
