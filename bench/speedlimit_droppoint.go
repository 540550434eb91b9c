package bench

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/edgebpf/edgebpf/stats"
	"github.com/edgebpf/edgebpf/workloads/speedlimit/wire"
)

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
