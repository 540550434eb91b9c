package bench

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/edgebpf/edgebpf/stats"
	"github.com/edgebpf/edgebpf/workloads/speedlimit/wire"
)

// SpeedLimitResponseConfig configures SpeedLimitResponse. Zero fields take the defaults given
// with them.
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
