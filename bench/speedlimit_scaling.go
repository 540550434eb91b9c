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
// SpeedLimitResponse does and returns SpeedLimitResponse's samples with X the number of
// clients (X unit "clients"), so that response time can be fitted against it. It stops after
// the first count that saw a drop unless Continue is set.
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
