package bench

// This file is the client loop shared by the Weinhold speed-limit experiments' meters
// (speedlimit_response.go, speedlimit_droppoint.go, speedlimit_scaling.go and, ours,
// speedlimit_load.go; SummarizeSpeedLimit is in speedlimit_summary.go), reference.md §4: N
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
	"runtime"
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
	cl, err := openSLClients(ep, p)
	if err != nil {
		return nil, err
	}
	defer closeSLClients(cl)

	// Every client blocks in syscalls on a thread of its own, as the thesis's threads did.
	// The Go runtime lets only GOMAXPROCS threads run Go code: with 2 Ps, a thread returning
	// from its recv waits for one (sysmon hands Ps over only every 20 µs to 10 ms), which
	// measured as stalls of tens of milliseconds. With a P per client the kernel alone
	// schedules the clients, as it schedules C threads.
	if prev := runtime.GOMAXPROCS(0); prev < p.clients+2 {
		runtime.GOMAXPROCS(min(p.clients+prev, maxGOMAXPROCS))
		defer runtime.GOMAXPROCS(prev)
	}
	start, errs := runSLClients(ctx, cl, p)
	return slFinish(ctx, ep, p, cl, start, errs)
}

// openSLClients opens the plan's clients' sockets; on an error it closes those it opened.
func openSLClients(ep Endpoints, p slPlan) ([]*slClient, error) {
	cl := make([]*slClient, p.clients)
	for i := range cl {
		// A sockaddr of its own per client: unix.Connect writes into it, and clients
		// reconnect concurrently.
		_, target := sockaddr(ep.Target, p.port)
		cl[i] = &slClient{ns: ep.Client, target: target, fd: -1}
		if err := cl[i].open(p.timeout); err != nil {
			closeSLClients(cl)
			return nil, fmt.Errorf("speed-limit client %d to %s port %d: %w", i, ep.Target, p.port, err)
		}
	}
	return cl, nil
}

func closeSLClients(cl []*slClient) {
	for _, c := range cl {
		if c != nil {
			c.close()
		}
	}
}

// runSLClients starts every client on a goroutine of its own, lets them all begin at once
// once every one is ready, and waits for them; a cancelled ctx stops them. It returns when
// they began (CLOCK_MONOTONIC ns) and each client's error.
func runSLClients(ctx context.Context, cl []*slClient, p slPlan) (int64, []error) {
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
	return start, errs
}

// slFinish gathers the clients' results into the run's outcome and returns it with the
// run's error: ctx's, a client's, or the server's wrong replies.
func slFinish(ctx context.Context, ep Endpoints, p slPlan, cl []*slClient, start int64, errs []error) (*slOutcome, error) {
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

// slSchedule is when one client sends: n requests back to back (closed loop), or, open
// loop, one every interval from start+phase until end, giving up at giveUp.
type slSchedule struct {
	open                                bool
	n                                   int
	start, interval, phase, end, giveUp int64 // CLOCK_MONOTONIC ns
}

// schedule is client idx's schedule in a run that began at start.
func (p slPlan) schedule(idx int, start int64) slSchedule {
	s := slSchedule{n: p.requests, start: start}
	if p.rate <= 0 {
		return s
	}
	s.open = true
	s.interval = int64(float64(p.clients) / p.rate * 1e9)
	s.phase = int64(float64(idx) / float64(p.clients) * float64(s.interval))
	s.end = start + p.duration.Nanoseconds()
	s.giveUp = s.end + p.timeout.Nanoseconds()
	s.n = 0
	if s.end > start+s.phase {
		s.n = int((s.end - start - s.phase + s.interval - 1) / s.interval)
	}
	return s
}

// sendTime waits until request i is due and returns the time it is timed from; ok is false
// once an open loop is past giveUp. prevDone is when the previous request's reply (or
// timeout) came.
func (s slSchedule) sendTime(i int, prevDone int64) (t0 int64, ok bool) {
	if !s.open {
		return udpNow(), true
	}
	due := s.start + s.phase + int64(i)*s.interval
	now := udpNow()
	if now > s.giveUp {
		return 0, false
	}
	if due-now > int64(20*time.Microsecond) {
		udpSleepUntil(due)
	}
	t0 = udpNow()
	// Still waiting for the server when this request was due: the wait is the server's
	// queue and counts (coordinated omission). A client merely waking up late is its own
	// delay and does not.
	if prevDone > due {
		t0 = due
	}
	return t0, true
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

	s := p.schedule(idx, start)
	if s.open {
		res.scheduled = s.n
	}
	return c.requests(idx, p, s, stop)
}

// requests sends the client's requests on schedule s, times them and keeps every
// stride-th one, until they are done or stop is set.
func (c *slClient) requests(idx int, p slPlan, s slSchedule, stop *atomic.Bool) error {
	res := &c.res
	get := wire.Message{Op: wire.GetSpeedLimit}.Append(nil)
	leave := wire.Message{Op: wire.OutOfRange}.Append(nil)
	buf := make([]byte, 64)
	n := s.n
	stride := 1
	if p.keep > 0 && n > p.keep {
		stride = (n + p.keep - 1) / p.keep
	}
	res.times = make([]float64, 0, n)
	res.start = udpNow()
	res.end = res.start
	prevDone := s.start // when the previous request's reply (or timeout) came
	for i := 0; i < n && !stop.Load(); i++ {
		t0, due := s.sendTime(i, prevDone)
		if !due {
			break
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
