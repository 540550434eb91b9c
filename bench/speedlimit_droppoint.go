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

// How SpeedLimitDropPoint searches for the first count that drops.
const (
	// SearchGeometric doubles the client count until a start drops, then bisects between the
	// last start without a drop and the first with one, and repeats the first-drop start to
	// confirm it: O(log n) starts.
	SearchGeometric = "geometric"
	// SearchLinear adds Step clients per start, the thesis's search: O(n) starts.
	SearchLinear = "linear"
)

// clientLimitShare is the share of its own send capacity (datagrams per second to a sink)
// above which a client that saw no drop up to the cap is taken to be the limit. Per request
// a client sends two datagrams (GET and OUT_OF_RANGE) and receives one, and with an XDP
// server the program runs in the sending thread too; measured here, clients at the cap sent
// 0.43 - 0.92 of their sink rate (a loaded 2-core VM), so a third leaves room for noise and
// below it the client clearly had capacity left.
const clientLimitShare = 1.0 / 3

// saturatedGrowth: a clean start at the cap that answered at most this times the best rate
// of the clean starts with fewer clients shows that more clients no longer added load; with
// nothing dropped, the server answered all the client could offer.
const saturatedGrowth = 1.25

// SpeedLimitDropPointConfig configures SpeedLimitDropPoint. Zero fields take the defaults.
type SpeedLimitDropPointConfig struct {
	// Port is as in SpeedLimitResponseConfig.
	Port uint16 `json:"-"`
	// Start is the number of clients the search starts with. Default 1.
	Start int `json:"start"`
	// Max is the most clients tried (the cap); a drop point equal to it means no drop up
	// to it, a censored value (">= Max"). Default 1000.
	Max int `json:"max"`
	// Step is the resolution: the counts tried are Start + k*Step. Linear search adds Step
	// per start. Default 1 (the thesis).
	Step int `json:"step,omitempty"`
	// Search is SearchGeometric (the default) or SearchLinear (the thesis's, for exact
	// replication). Both find the same first-drop count of a server whose drops are
	// monotonic in the number of clients.
	Search string `json:"search,omitempty"`
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
	c.Search = cmp0(c.Search, SearchGeometric)
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
	if d.Search != SearchGeometric && d.Search != SearchLinear {
		errs = append(errs, fmt.Errorf("%s: search %q is unknown: choose %s (O(log n) starts) or %s (the thesis's, one step per start)", meter, c.Search, SearchGeometric, SearchLinear))
	}
	if c.Requests < 0 {
		errs = append(errs, fmt.Errorf("%s: requests %d is negative", meter, c.Requests))
	}
	if c.Pause < 0 {
		errs = append(errs, fmt.Errorf("%s: pause %v is negative", meter, c.Pause))
	}
	return errors.Join(errs...)
}

// SpeedLimitDropPoint is the thesis's experiment 2: it starts clients, each sending Requests
// requests, and after a pause starts a different number, until it finds the first count at
// which a request is dropped; a start is stopped at its first drop (the thesis killed the
// client). Search says how the counts are chosen (SearchGeometric by default, the thesis's
// SearchLinear). It returns per start the stats.Timeouts and stats.AchievedRate it saw, with
// X the number of clients, and per search:
//
//   - stats.DropPoint, the most clients that ran without a drop (the thesis's "one less than
//     the number of threads"; Max if none dropped up to Max, Start-Step if the first start
//     did);
//   - stats.DropCensored, 1 when none dropped up to Max (the drop point is a lower bound);
//   - stats.ClientSendCapacity, the datagrams per second the client's threads send to a sink
//     of their own, the larger of a measurement before and one after the search;
//   - stats.ClientLimited, 1 when no start dropped and either the start at the cap answered
//     at most 1.25 times the best rate of the starts with fewer clients (more clients no
//     longer added load) or it sent at least a third of the client's send capacity: the
//     client, not the server, was the limit.
func SpeedLimitDropPoint(ctx context.Context, ep Endpoints, cfg SpeedLimitDropPointConfig) ([]stats.Sample, error) {
	if err := errors.Join(checkUDPEndpoints(ep), cfg.Validate()); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	s := &dropSearch{ctx: ctx, ep: ep, cfg: cfg, origin: udpNow()}
	s.try = s.start
	// The client's capacity before and after the search; finish takes the larger, as other
	// load on the machine only ever lowers it.
	var err error
	if s.capacity, err = clientSendCapacity(ctx, ep.Client, sendCapacityWindow); err != nil {
		return nil, fmt.Errorf("speed-limit drop point: client send capacity: %w", err)
	}
	if err := s.search(); err != nil {
		return s.samples, err
	}
	return s.finish()
}

// Starts lists the client counts SpeedLimitDropPoint runs, in order, against a server that
// answers up to drop concurrent clients and drops beyond (a negative drop: never). Run
// time estimates use it; it runs nothing.
func (c SpeedLimitDropPointConfig) Starts(drop int) []int {
	s := &dropSearch{cfg: c.withDefaults()}
	var counts []int
	s.try = func(n int) (bool, error) {
		counts = append(counts, n)
		return drop >= 0 && n > drop, nil
	}
	_ = s.search()
	return counts
}

func (s *dropSearch) search() error {
	if s.cfg.Search == SearchLinear {
		return s.linear()
	}
	return s.geometric()
}

// dropSearch is one search's state. Counts are indices k on the grid Start + k*Step; k -1
// is Start-Step, the count below the first start.
type dropSearch struct {
	ctx     context.Context
	ep      Endpoints
	cfg     SpeedLimitDropPointConfig
	origin  int64
	samples []stats.Sample
	probes  int
	try     func(n int) (dropped bool, err error) // runs a start of n clients
	good    int                                   // the highest k that ran without a drop, -1 if none
	last    *slOutcome                            // the last start without a drop
	// bestBefore is the highest answered rate of the clean starts before last.
	bestBefore float64
	capacity   float64 // the client's send capacity before the search, datagrams/s
}

func (s *dropSearch) count(k int) int { return s.cfg.Start + k*s.cfg.Step }
func (s *dropSearch) top() int        { return (s.cfg.Max - s.cfg.Start) / s.cfg.Step }

// probe runs one start of count(k) clients and says whether it dropped.
func (s *dropSearch) probe(k int) (bool, error) {
	s.probes++
	dropped, err := s.try(s.count(k))
	if err == nil && !dropped {
		s.good = max(s.good, k)
	}
	return dropped, err
}

// start runs n clients after the pause (the first start runs at once) and records its
// timeouts and achieved rate; it says whether a request was dropped.
func (s *dropSearch) start(n int) (bool, error) {
	if s.probes > 1 && sleepCtx(s.ctx, time.Duration(s.cfg.Pause)) != nil {
		return false, s.ctx.Err()
	}
	cfg := s.cfg
	out, err := runSL(s.ctx, s.ep, slPlan{
		slCommon: slCommon{port: cfg.Port, timeout: time.Duration(cfg.Timeout), leave: cfg.Leave, keep: 1},
		clients:  n, requests: cfg.Requests, stopOnDrop: true,
	})
	if out != nil {
		t, x := udpSince(s.origin, out.end), strconv.Itoa(n)
		s.samples = append(s.samples, stats.Sample{Seq: s.probes, T: t, X: x, XUnit: XUnitClients, Metric: stats.Timeouts, Value: float64(out.failed())})
		if out.wall > 0 {
			s.samples = append(s.samples, stats.Sample{Seq: s.probes, T: t, X: x, XUnit: XUnitClients, Metric: stats.AchievedRate, Value: float64(out.replies()) / out.wall.Seconds()})
		}
	}
	if err != nil {
		return false, err
	}
	if out.failed() > 0 {
		return true, nil
	}
	if s.last != nil {
		s.bestBefore = max(s.bestBefore, s.last.answeredRate())
	}
	s.last = out
	return false, nil
}

// linear is the thesis's search: one step more per start until a start drops.
func (s *dropSearch) linear() error {
	s.good = -1
	for k := 0; k <= s.top(); k++ {
		if dropped, err := s.probe(k); err != nil || dropped {
			return err
		}
	}
	return nil
}

// maxConfirmations bounds how often the geometric search repeats a first-drop start that
// then ran clean.
const maxConfirmations = 3

// geometric doubles the count until a start drops (or the cap ran clean), bisects down to
// one step, and repeats the first-drop start: if the repeat runs clean, that count joins
// the clean ones and the search goes on above it.
func (s *dropSearch) geometric() error {
	s.good = -1
	for range maxConfirmations {
		bad, err := s.grow()
		if err != nil || bad < 0 {
			return err
		}
		if bad, err = s.bisect(bad); err != nil {
			return err
		}
		dropped, err := s.probe(bad) // the confirming repeat
		if err != nil || dropped {
			return err
		}
	}
	return nil
}

// grow probes from above the clean counts, doubling the number of clients, and returns the
// first k that dropped, or -1 when every count up to the cap ran clean.
func (s *dropSearch) grow() (int, error) {
	k := s.good + 1
	for k <= s.top() {
		dropped, err := s.probe(k)
		if err != nil || dropped {
			return k, err
		}
		if k == s.top() {
			break
		}
		// Twice the clients, on the grid, at least one step, at most the cap.
		next := (2*s.count(k) - s.cfg.Start + s.cfg.Step - 1) / s.cfg.Step
		k = min(max(next, k+1), s.top())
	}
	return -1, nil
}

// bisect narrows (s.good, bad] to one step and returns the first k that dropped.
func (s *dropSearch) bisect(bad int) (int, error) {
	for bad-s.good > 1 {
		mid := s.good + (bad-s.good)/2
		dropped, err := s.probe(mid)
		if err != nil {
			return bad, err
		}
		if dropped {
			bad = mid
		}
	}
	return bad, nil
}

// finish adds the search's result: whether it is censored, the client's send capacity,
// which side limited and, last, the drop point.
func (s *dropSearch) finish() ([]stats.Sample, error) {
	censored := s.good == s.top()
	point := max(s.count(s.good), 0)
	if censored {
		point = s.cfg.Max
	}
	after, err := clientSendCapacity(s.ctx, s.ep.Client, sendCapacityWindow)
	if err != nil {
		return s.samples, fmt.Errorf("speed-limit drop point: client send capacity: %w", err)
	}
	capacity := max(s.capacity, after)
	limited := false
	if censored && s.last != nil {
		// The load stopped growing with the clients, or the client sent near its own
		// ceiling: the server answered all the client could offer.
		saturated := s.bestBefore > 0 && s.last.answeredRate() <= saturatedGrowth*s.bestBefore
		limited = saturated || capacity > 0 && s.last.sendRate() >= clientLimitShare*capacity
	}
	t := udpSince(s.origin, udpNow())
	s.samples = append(s.samples,
		stats.Sample{T: t, Metric: stats.DropCensored, Value: b2f(censored)},
		stats.Sample{T: t, Metric: stats.ClientSendCapacity, Value: capacity},
		stats.Sample{T: t, Metric: stats.ClientLimited, Value: b2f(limited)},
		stats.Sample{T: t, Metric: stats.DropPoint, Value: float64(point)})
	return s.samples, nil
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
