package bench

import (
	"context"
	"errors"
	"fmt"
	"math"
	"runtime"
	"strconv"
	"time"

	"github.com/edgebpf/edgebpf/internal/cpupin"
	"github.com/edgebpf/edgebpf/stats"
)

// UDPSweepConfig configures UDPSweep. Zero-valued fields take the defaults given with them.
type UDPSweepConfig struct {
	// Port is the UDP port the receiver listens on. Default 5204.
	Port uint16 `json:"port,omitempty"`
	// Rates are the target send rates in UDP payload bit/s, as iperf3 -b counts them (IP and
	// UDP headers excluded), swept in this order. nil means the thesis's sweep: 1, 50, 100,
	// 150, ... 500 Mbit/s. An empty non-nil slice is an error.
	Rates []Rate `json:"rates"`
	// Size is the UDP payload of every datagram in bytes, 16 to 65507. Default 1400, which
	// with 28 bytes of IP and UDP headers fits the project's MTU of 1450.
	Size int `json:"size,omitempty"`
	// PerRate is how long each rate is sent. Default 5s (the thesis used 60 s).
	PerRate Duration `json:"per_rate"`
	// Pause is the idle time between two rates, so queues of one rate drain before the
	// next; the CPU time spent in it is the idle rate cpu_ns_per_pkt leaves out (before the
	// first rate a pause of at most 50ms measures it). Default 500ms.
	Pause Duration `json:"pause,omitempty"`
	// MaxOWDSamples bounds the OWD samples kept per rate. Default 20000. A rate expected to
	// send N packets keeps the OWD of every k-th packet by sequence number, k = ceil(N /
	// MaxOWDSamples), so every packet up to 20000 packets per rate, every second one at
	// 20001 to 40000, and so on.
	MaxOWDSamples int `json:"max_owd_samples,omitempty"`
	// Threads is how many threads send, each locked to its OS thread with a socket of its
	// own, sharing one schedule. Default 0: one per CPU the client may run on (the CPUs of
	// --cpu-client if it is pinned, else every CPU of the process).
	Threads int `json:"threads,omitempty"`
	// NoGSO sends one datagram per sendmmsg message instead of UDP GSO buffers. With GSO
	// (the default where the kernel takes it) veths, the bridge, TC programs and nftables
	// see one packet per buffer of up to 64 datagrams; see gso_segments.
	NoGSO bool `json:"no_gso,omitempty"`
	// Grace is how long the receiver waits for late packets after the last send of a rate
	// before counting the missing ones as lost. Default 200ms.
	Grace time.Duration `json:"-"`
}

// udpSweepRates returns the thesis's bottleneck sweep: 1, 50, 100, 150, ... 500 Mbit/s.
func udpSweepRates() []Rate {
	rates := []Rate{1e6}
	for r := Rate(50e6); r <= 500e6; r += 50e6 {
		rates = append(rates, r)
	}
	return rates
}

func (c UDPSweepConfig) withDefaults() UDPSweepConfig {
	if c.Port == 0 {
		c.Port = 5204
	}
	if c.Rates == nil {
		c.Rates = udpSweepRates()
	}
	if c.Size == 0 {
		c.Size = defaultUDPSize
	}
	if c.PerRate == 0 {
		c.PerRate = Duration(5 * time.Second)
	}
	if c.Pause == 0 {
		c.Pause = Duration(500 * time.Millisecond)
	}
	if c.MaxOWDSamples == 0 {
		c.MaxOWDSamples = 20000
	}
	if c.Grace == 0 {
		c.Grace = defaultUDPGrace
	}
	return c
}

// Validate reports every field of c that UDPSweep cannot use, one sentence each. Zero fields
// are valid: they take their defaults.
func (c UDPSweepConfig) Validate() error {
	const meter = "udp sweep"
	d := c.withDefaults()
	errs := udpFieldErrors(meter, c.Size, c.Grace)
	if c.PerRate < 0 {
		errs = append(errs, fmt.Errorf("%s: per-rate duration %v is negative: give how long to send each rate, or 0 for the default 5s", meter, c.PerRate))
	}
	if c.Pause < 0 {
		errs = append(errs, fmt.Errorf("%s: pause %v is negative: give the idle time between rates, or 0 for the default 500ms", meter, c.Pause))
	}
	if c.Threads < 0 || c.Threads > maxSenderThreads {
		errs = append(errs, fmt.Errorf("%s: threads %d is not between 0 and %d: give the number of sending threads, or 0 for one per CPU", meter, c.Threads, maxSenderThreads))
	}
	if c.MaxOWDSamples < 0 {
		errs = append(errs, fmt.Errorf("%s: max OWD samples %d is negative: give how many delays to keep per rate, or 0 for the default 20000", meter, c.MaxOWDSamples))
	}
	if c.Rates != nil && len(c.Rates) == 0 {
		errs = append(errs, fmt.Errorf("%s: rates is empty: give at least one rate in bit/s, or nil for the default sweep of 1 to 500 Mbit/s", meter))
	}
	// Judge whether a packet fits the duration only with a usable size and duration.
	size, dur := d.Size, max(d.PerRate, 0)
	if len(udpFieldErrors(meter, c.Size, 0)) > 0 {
		size = 0
	}
	seen := make(map[float64]int, len(d.Rates))
	for i, r := range d.Rates {
		if err := udpRateError(meter, fmt.Sprintf("rates[%d]", i), float64(r), size, time.Duration(dur)); err != nil {
			errs = append(errs, err)
			continue
		}
		if j, ok := seen[float64(r)]; ok {
			errs = append(errs, fmt.Errorf("%s: rates[%d] repeats rates[%d] (%s bit/s): give each rate once, since samples are told apart by their rate", meter, i, j, strconv.FormatFloat(float64(r), 'f', -1, 64)))
			continue
		}
		seen[float64(r)] = i
	}
	return errors.Join(errs...)
}

// UDPSweep is the bottleneck sweep: it sends a paced UDP stream from ep.Client to
// ep.Target:cfg.Port, received on all addresses in ep.Server, at each of cfg.Rates for
// cfg.PerRate, with cfg.Pause between rates and fresh sockets for every rate. The stream is
// the one UDPJitter uses (see udpstream.go): one-way delays from CLOCK_MONOTONIC send and
// receive times on one host, taken in user space, application to application.
//
// Every sample of a rate has X set to the target rate in bit/s as an integer string and
// XUnit "bit/s". Per rate, UDPSweep returns stats.OWD samples in seconds (Seq is the packet's
// sequence number within the rate, T its send time; at most about MaxOWDSamples of them,
// see there), then one stats.Loss sample: the percentage of sent packets not received within
// Grace after the last send; one stats.SendRate sample: the payload bit/s the sender
// achieved, which falls short of the target when the sender cannot keep up; and one
// stats.Throughput sample: the distinct payload bits received over the time from the rate's
// start to the last arrival. Then, per rate, the sender's and the path's figures (stats
// catalogue): stats.CPUNsPerPkt (and its :machine variant), stats.LimitedBy per side
// (:sender, :receiver, :dataplane), stats.GSOSegments and stats.SenderThreads. T is seconds
// since UDPSweep started.
//
// The sender is cfg.Threads OS threads with a socket each, sending with sendmmsg and UDP GSO
// where the kernel takes it (sender.go); the receiver is UDPJitter's.
//
// When ctx ends it returns within about 100 ms with the samples of the finished rates, the
// OWD samples of the interrupted one, and ctx.Err().
func UDPSweep(ctx context.Context, ep Endpoints, cfg UDPSweepConfig) ([]stats.Sample, error) {
	if err := errors.Join(checkUDPEndpoints(ep), cfg.Validate()); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	sender := sweepSenderConfig{threads: cfg.Threads, gso: !cfg.NoGSO}
	if sender.threads == 0 {
		sender.threads = clientCPUs(ctx)
	}
	pids, err := pathProcesses()
	if err != nil {
		return nil, fmt.Errorf("udp sweep: find the processes whose CPU time counts: %w", err)
	}
	sender.pids = pids
	origin := udpNow()
	var samples []stats.Sample
	for i, rate := range cfg.Rates {
		// The pause lets the previous rate's queues drain and measures the idle CPU time
		// that cpu_ns_per_pkt leaves out; before the first rate a short one does.
		wait := time.Duration(cfg.Pause)
		if i == 0 {
			wait = min(wait, firstIdleWindow)
		}
		idle, err := measureIdle(ctx, pids, wait)
		if err != nil {
			if ctx.Err() != nil {
				return samples, ctx.Err()
			}
			return samples, fmt.Errorf("udp sweep: read the idle CPU time: %w", err)
		}
		sender.idle = idle
		sc := udpStreamConfig{
			port:     cfg.Port,
			rate:     float64(rate),
			size:     cfg.Size,
			duration: time.Duration(cfg.PerRate),
			grace:    cfg.Grace,
		}
		sc.owdEvery = max(1, uint64(math.Ceil(float64(sc.packets())/float64(cfg.MaxOWDSamples))))
		x := strconv.FormatFloat(float64(rate), 'f', -1, 64)
		res, st, err := runSweepStream(ctx, ep, sc, sender)
		if res != nil {
			for _, o := range res.owd {
				samples = append(samples, stats.Sample{
					Seq:    int(o.seq),
					T:      udpSince(origin, o.sent),
					X:      x,
					XUnit:  "bit/s",
					Metric: stats.OWD,
					Value:  float64(o.owd) / 1e9,
				})
			}
		}
		if err != nil {
			if ctx.Err() != nil && errors.Is(err, ctx.Err()) {
				return samples, err
			}
			return samples, fmt.Errorf("udp sweep at %s bit/s: %w", x, err)
		}
		if st.costErr != nil {
			return samples, fmt.Errorf("udp sweep at %s bit/s: read CPU time and socket drops: %w", x, st.costErr)
		}
		samples = append(samples, sweepRateSamples(udpSince(origin, udpNow()), x, float64(rate), res, st)...)
	}
	return samples, nil
}

// firstIdleWindow bounds the idle reading before the sweep's first rate, which has no pause.
const firstIdleWindow = 50 * time.Millisecond

// Thresholds of stats.LimitedBy: a sender below limitSendShare of the target rate limited
// it; losing limitLossShare of the datagrams sent at the socket or on the way limited it.
const (
	limitSendShare = 0.95
	limitLossShare = 0.01
)

// sweepRateSamples returns the samples of one finished rate but its one-way delays.
func sweepRateSamples(t float64, x string, rate float64, res *udpStreamResult, st *sweepStream) []stats.Sample {
	at := func(m stats.Metric, v float64) stats.Sample {
		return stats.Sample{T: t, X: x, XUnit: "bit/s", Metric: m, Value: v}
	}
	qualified := func(m stats.Metric, q string) stats.Metric {
		m.Name += ":" + q
		return m
	}
	indicator := func(b bool) float64 {
		if b {
			return 100
		}
		return 0
	}
	sent := float64(res.sent)
	lost := max(sent-float64(res.received), 0)
	atSocket := min(float64(st.rcvbufDrops), lost)
	out := []stats.Sample{
		at(stats.Loss, res.lossPercent()),
		at(stats.SendRate, res.sendRate()),
		at(stats.Throughput, res.throughput()),
		at(qualified(stats.LimitedBy, "sender"), indicator(res.sendRate() < limitSendShare*rate)),
		at(qualified(stats.LimitedBy, "receiver"), indicator(atSocket >= limitLossShare*sent)),
		at(qualified(stats.LimitedBy, "dataplane"), indicator(lost-atSocket >= limitLossShare*sent)),
		at(stats.GSOSegments, float64(st.send.gsoSegments)),
		at(stats.SenderThreads, float64(st.send.threads)),
	}
	if res.received > 0 {
		out = append(out,
			at(stats.CPUNsPerPkt, st.pathNs/float64(res.received)),
			at(qualified(stats.CPUNsPerPkt, "machine"), st.machineNs/float64(res.received)))
	}
	return out
}

// clientCPUs returns how many CPUs the client role may run on: those of its pinning in
// ctx, else those of this process's affinity mask.
func clientCPUs(ctx context.Context) int {
	if s := cpupin.FromContext(ctx)[cpupin.Client]; !s.Empty() {
		return len(s.CPUs())
	}
	return max(runtime.NumCPU(), 1)
}

// udpPause waits for d or until ctx ends, and then returns ctx.Err().
func udpPause(ctx context.Context, d time.Duration) error {
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-timer.C:
		return nil
	}
}
