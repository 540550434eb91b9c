package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/edgebpf/edgebpf/internal/cpupin"
	"github.com/edgebpf/edgebpf/stats"
)

// ReferenceConfig configures Reference. Zero-valued fields take the defaults given with them.
type ReferenceConfig struct {
	// Port is the first of eight consecutive ports: iperf3 TCP, sockperf TCP, iperf3 UDP,
	// TCPThroughput, ConnectRTT, UDPJitter, sockperf UDP and RequestResponse. Default 5301,
	// clear of the other meters' ports.
	Port uint16 `json:"port,omitempty"`
	// Rounds is how often every pair (reference tool, our meter) runs. Default 3.
	Rounds int `json:"rounds"`
	// Duration is the length of each tool run and of each stream of ours (the jitter
	// streams' unless JitterDuration is set), a whole number of seconds (iperf3 and
	// sockperf take -t in seconds). Default 5s.
	Duration Duration `json:"duration"`
	// Interval is the length of one throughput sample, for iperf3 -i and TCPThroughput.
	// Default 1s.
	Interval Duration `json:"interval,omitempty"`
	// PingCount is the number of ConnectRTT connects and of paced RequestResponse round
	// trips per round and protocol. Default 200.
	PingCount int `json:"ping_count,omitempty"`
	// PingInterval is the time between two pings, of ConnectRTT, of paced RequestResponse
	// and of paced sockperf (--mps). Default 10ms.
	PingInterval Duration `json:"ping_interval,omitempty"`
	// RRDuration is the length of each sockperf ping-pong run, busy and paced, a whole
	// number of seconds. Default 2s.
	RRDuration Duration `json:"rr_duration,omitempty"`
	// BusyCount is the number of busy RequestResponse round trips per round and protocol.
	// Default 5000.
	BusyCount int `json:"busy_count,omitempty"`
	// JitterRate is the UDP payload rate in bit/s of iperf3 -u -b and UDPJitter.
	// Default 1e6.
	JitterRate Rate `json:"jitter_rate,omitempty"`
	// JitterDuration is the length of each jitter stream, iperf3's and ours, a whole
	// number of seconds. Default: Duration.
	JitterDuration Duration `json:"jitter_duration,omitempty"`
	// JitterInterval is how often both jitter meters report their running RFC 3550
	// estimate, for iperf3 -i and UDPJitter. Every report is one jitter sample, so a
	// shorter interval gives the medians more samples of the same estimator: at 1 Mbit/s
	// of 1400-byte datagrams (89 a second) 250 ms spans 22 datagrams, and the estimate,
	// which forgets 1/16 per datagram, keeps (15/16)^22 = 24 % of the previous report's
	// deviation. Default: Interval.
	JitterInterval Duration `json:"jitter_interval,omitempty"`
	// JitterRepeat is how often the jitter pair (iperf3, then ours, or the other way round,
	// alternating) runs in every round, the kernel-stamped stream of ours only in the first.
	// The machine's state drifts between runs more than a run's intervals vary, so more,
	// shorter pairs pin the ratio down better than fewer, longer ones. Default 1.
	JitterRepeat int `json:"jitter_repeat,omitempty"`
	// Size is the UDP payload in bytes of iperf3 -l and UDPJitter. Default 1400.
	Size int `json:"size,omitempty"`
	// Only restricts every round to some of the quantities: RefThroughput, RefRTT,
	// RefJitter. Default: all three.
	Only []string `json:"only,omitempty"`
}

// The quantities Reference calibrates (ReferenceConfig.Only).
const (
	RefThroughput = "throughput" // iperf3 TCP and TCPThroughput
	RefRTT        = "rtt"        // sockperf ping-pong, RequestResponse and ConnectRTT
	RefJitter     = "jitter"     // iperf3 UDP and UDPJitter
)

// refQuantities lists the quantities in the order a round measures them.
var refQuantities = []string{RefThroughput, RefRTT, RefJitter}

const (
	refPorts     = 8
	maxRounds    = 1000
	refMsgSize   = 64                     // sockperf -m
	minToolIvl   = 100 * time.Millisecond // iperf3 reports at most every 100 ms
	toolOutLimit = 64 << 10               // bytes of a tool's messages kept for errors
	// serverStartTimeout bounds the wait for a tool's server to listen.
	serverStartTimeout = 5 * time.Second
	// toolWaitDelay bounds the wait for a killed tool's output pipes to close.
	toolWaitDelay = time.Second
)

// refInstall is what a user runs to get the reference tools on Debian.
const refInstall = "apt-get install iperf3 sockperf"

func (c ReferenceConfig) withDefaults() ReferenceConfig {
	if c.Port == 0 {
		c.Port = 5301
	}
	if c.Rounds == 0 {
		c.Rounds = 3
	}
	if c.Duration == 0 {
		c.Duration = Duration(5 * time.Second)
	}
	if c.Interval == 0 {
		c.Interval = Duration(time.Second)
	}
	if c.PingCount == 0 {
		c.PingCount = 200
	}
	if c.PingInterval == 0 {
		c.PingInterval = Duration(10 * time.Millisecond)
	}
	if c.JitterRate == 0 {
		c.JitterRate = 1e6
	}
	if c.RRDuration == 0 {
		c.RRDuration = Duration(2 * time.Second)
	}
	if c.BusyCount == 0 {
		c.BusyCount = 5000
	}
	if c.Size == 0 {
		c.Size = defaultUDPSize
	}
	if c.JitterDuration == 0 {
		c.JitterDuration = c.Duration
	}
	if c.JitterInterval == 0 {
		c.JitterInterval = c.Interval
	}
	if c.JitterRepeat == 0 {
		c.JitterRepeat = 1
	}
	return c
}

// Validate reports every field of c that Reference cannot use, one sentence each. Zero
// fields are valid: they take their defaults.
func (c ReferenceConfig) Validate() error {
	d := c.withDefaults()
	var errs []error
	if int(d.Port)+refPorts-1 > math.MaxUint16 {
		errs = append(errs, fmt.Errorf("reference: port %d leaves no room for its %d consecutive ports: give at most %d", c.Port, refPorts, math.MaxUint16-refPorts+1))
	}
	if d.Rounds < 1 || d.Rounds > maxRounds {
		errs = append(errs, fmt.Errorf("reference: rounds %d is out of range: give 1 to %d, or 0 for the default 3", c.Rounds, maxRounds))
	}
	durationOK, errs := toolDurationErrors(errs, "duration", "each run", c.Duration, d.Duration, "the default 5s")
	errs = toolIntervalErrors(errs, "interval", "one throughput sample", c.Interval, d.Interval, "duration", d.Duration, durationOK, "the default 1s")
	// The jitter's run and interval are judged on their own only where set: inherited,
	// the checks above said what is wrong with them.
	jitterOK := durationOK
	if c.JitterDuration != 0 {
		jitterOK, errs = toolDurationErrors(errs, "jitter duration", "each jitter stream", c.JitterDuration, d.JitterDuration, "the duration's")
	}
	switch {
	case c.JitterInterval != 0:
		errs = toolIntervalErrors(errs, "jitter interval", "one jitter report", c.JitterInterval, d.JitterInterval, "jitter duration", d.JitterDuration, jitterOK, "the interval's")
	case c.JitterDuration != 0 && jitterOK && d.Interval > d.JitterDuration:
		errs = append(errs, fmt.Errorf("reference: jitter duration %v is shorter than the interval %v the jitter reports inherit: give a jitter interval of at most %v", d.JitterDuration, d.Interval, d.JitterDuration))
	}
	if d.JitterRepeat < 1 || d.JitterRepeat > maxRounds {
		errs = append(errs, fmt.Errorf("reference: jitter repeat %d is out of range: give 1 to %d jitter pairs per round, or 0 for the default 1", c.JitterRepeat, maxRounds))
	}
	if d.PingCount < 0 {
		errs = append(errs, fmt.Errorf("reference: ping count %d is negative: give the number of connects per round, or 0 for the default 200", c.PingCount))
	}
	if d.RRDuration < Duration(time.Second) || d.RRDuration%Duration(time.Second) != 0 {
		errs = append(errs, fmt.Errorf("reference: rr duration %v is not a whole number of seconds: sockperf takes -t in seconds, so give 1s, 2s and so on, or 0 for the default 2s", c.RRDuration))
	}
	if d.BusyCount < 0 || d.BusyCount > maxRRRuns {
		errs = append(errs, fmt.Errorf("reference: busy count %d is out of range: give 1 to %d, or 0 for the default 5000", c.BusyCount, maxRRRuns))
	}
	if d.PingInterval < Duration(time.Millisecond) || d.PingInterval > Duration(time.Second) {
		errs = append(errs, fmt.Errorf("reference: ping interval %v is out of range: give 1ms to 1s (sockperf paces whole messages per second), or 0 for the default 10ms", c.PingInterval))
	}
	for _, q := range c.Only {
		if !slices.Contains(refQuantities, q) {
			errs = append(errs, fmt.Errorf("reference: quantity %q in only is unknown: give some of %s", q, strings.Join(refQuantities, ", ")))
		}
	}
	errs = append(errs, udpFieldErrors("reference", c.Size, 0)...)
	// Judge whether a packet fits the duration only with a usable size and duration.
	size, dur := d.Size, time.Duration(0)
	if len(udpFieldErrors("reference", c.Size, 0)) > 0 {
		size = 0
	}
	if jitterOK {
		dur = time.Duration(d.JitterDuration)
	}
	if err := udpRateError("reference", "jitter rate", float64(d.JitterRate), size, dur); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// toolDurationErrors appends to errs what is wrong with a tool run's duration d (set as
// given, d with its default; what names the run, def the default in words) and says
// whether d is usable: a whole number of seconds, as iperf3 and sockperf take -t.
func toolDurationErrors(errs []error, name, what string, set, d Duration, def string) (bool, []error) {
	switch {
	case d < 0:
		return false, append(errs, fmt.Errorf("reference: %s %v is negative: give the length of %s, or 0 for %s", name, set, what, def))
	case d < Duration(time.Second) || d%Duration(time.Second) != 0:
		return false, append(errs, fmt.Errorf("reference: %s %v is not a whole number of seconds: iperf3 and sockperf take -t in seconds, so give 1s, 2s and so on", name, d))
	}
	return true, errs
}

// toolIntervalErrors appends to errs what is wrong with a reporting interval d (set as
// given) of runs of length dur, the field durName (judged only when durOK).
func toolIntervalErrors(errs []error, name, what string, set, d Duration, durName string, dur Duration, durOK bool, def string) []error {
	switch {
	case d < 0:
		return append(errs, fmt.Errorf("reference: %s %v is negative: give the length of %s, or 0 for %s", name, set, what, def))
	case d < Duration(minToolIvl):
		return append(errs, fmt.Errorf("reference: %s %v is shorter than iperf3 reports: give at least %v", name, d, minToolIvl))
	case durOK && d > dur:
		return append(errs, fmt.Errorf("reference: %s %v is longer than %s %v: give an interval of at most the %s", name, d, durName, dur, durName))
	}
	return errs
}

func (c ReferenceConfig) port(i int) uint16 { return c.Port + uint16(i) }

func (c ReferenceConfig) streamConfig() TCPThroughputConfig {
	return TCPThroughputConfig{Port: c.port(3), Duration: c.Duration, Interval: c.Interval}
}

func (c ReferenceConfig) pingConfig() ConnectConfig {
	return ConnectConfig{Port: c.port(4), Count: c.PingCount, Interval: c.PingInterval}
}

func (c ReferenceConfig) rrConfig(proto, mode string) RRConfig {
	return RRConfig{Port: c.port(7), Protocols: []string{proto}, Modes: []string{mode},
		BusyCount: c.BusyCount, PacedCount: c.PingCount, Interval: c.PingInterval}
}

func (c ReferenceConfig) jitterConfig(stamps string) UDPJitterConfig {
	return UDPJitterConfig{Port: c.port(5), Rate: c.JitterRate, Size: c.Size, Duration: c.JitterDuration, Interval: c.JitterInterval, RxStamps: stamps}
}

// qualify returns m for one source: the name "base:source" with m's unit and direction, as
// stats.Lookup resolves it.
func qualify(m stats.Metric, source string) stats.Metric {
	m.Name += ":" + source
	return m
}

// The metrics Reference produces: one series per source of the same quantity.
var (
	refThroughputIperf3 = qualify(stats.Throughput, "iperf3")
	refThroughputOurs   = qualify(stats.Throughput, "edgebpf")
	// The connect round trip is ConnectRTT's, next to sockperf's paced TCP round trip.
	refRTTConnect       = qualify(RRMetric(RRTCP, RRPaced), "edgebpf-connect")
	refJitterIperf3     = qualify(stats.Jitter, "iperf3")
	refJitterOurs       = qualify(stats.Jitter, "edgebpf")
	refJitterOursKernel = qualify(stats.Jitter, "edgebpf-kernel")
	refLossIperf3       = qualify(stats.Loss, "iperf3")
	refLossOurs         = qualify(stats.Loss, "edgebpf")
	refLossOursKernel   = qualify(stats.Loss, "edgebpf-kernel")
)

// Reference measures the path from ep.Client to ep.Target with the established reference
// tools and with edgebpf's own meters, interleaved in one run, so that one results
// directory holds both and their ratio shows whether a meter, not the path, is the limit.
// Every round runs three pairs, the tool first and ours right after in odd rounds, ours first
// in even rounds, so drift over the run and whatever the step before leaves behind hit both
// alike:
//
//   - throughput: iperf3 -c -t Duration -i Interval -J against iperf3 -s -1, one
//     throughput:iperf3 sample per interval (intervals[].sum.bits_per_second, counted at
//     the sender), then TCPThroughput for the same duration, throughput:edgebpf (counted at the
//     receiver; on a steady stream the two differ by at most the socket buffers);
//   - round trips, for UDP and TCP, busy and paced: sockperf ping-pong [--tcp] -m 64
//     --full-rtt for RRDuration at --mps=max (busy) or one message per PingInterval
//     (paced) against sockperf server, one sample per message from its --full-log as
//     rtt:<udp|tcp>-rr-<busy|paced>:sockperf (a busy run's evenly thinned to about
//     BusyCount), then RequestResponse in the same protocol and mode (BusyCount or
//     PingCount round trips), the same metric with the source edgebpf;
//     after the paced TCP pair also ConnectRTT as rtt:tcp-rr-paced:edgebpf-connect: the
//     connect handshake (SYN to SYN-ACK) is one round trip of the same path through
//     different kernel code, the thesis's latency;
//   - UDP jitter: iperf3 -u -b JitterRate -l Size -t Duration -i Interval -J
//     --get-server-output against iperf3 -s -1 -J -i Interval, one jitter:iperf3 sample per interval
//     of the receiving server (server_output_json.intervals[].sum.jitter_ms, in seconds)
//     and one loss:iperf3, then UDPJitter at the same rate, size, duration and interval,
//     jitter:edgebpf and loss:edgebpf, and once more with
//     the kernel's receive timestamps, jitter:edgebpf-kernel and loss:edgebpf-kernel: how
//     much of the jitter the receiving process's own wake-ups add on this path.
//
// Each tool is started inside its namespace: the process is forked from the thread that
// ep.Server.Do or ep.Client.Do runs on, which holds the namespace and stays locked until the
// process has exited, so the tool's SIGKILL parent-death signal fires only if edgebpf dies.
// A server is started per run, polled from inside its namespace until it listens, and
// killed and waited for once the client is done, also on error and cancel. sockperf writes
// its log to a temporary file that is removed. Seq numbers each metric's samples in order;
// T is seconds since Reference started (for a tool's samples, its start plus the tool's own
// time). The target must be IPv4: sockperf 3.7 knows no IPv6.
//
// A missing tool is an error naming the Debian packages to install. When ctx ends, the
// running tool is killed and Reference returns within about a second with the samples of
// the runs completed and ctx.Err().
func Reference(ctx context.Context, ep Endpoints, cfg ReferenceConfig) ([]stats.Sample, error) {
	if err := errors.Join(checkEndpoints(ep), cfg.Validate()); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	if !ep.Target.Unmap().Is4() {
		return nil, fmt.Errorf("reference: target %s is not an IPv4 address: sockperf supports IPv4 only", ep.Target)
	}
	tools, err := lookTools("iperf3", "sockperf")
	if err != nil {
		return nil, err
	}
	r := &refRun{ep: ep, cfg: cfg, tools: tools, start: time.Now(), seq: map[string]int{},
		target: ep.Target.Unmap().String()}
	for round := 1; round <= cfg.Rounds; round++ {
		for _, s := range r.steps(round) {
			if ctx.Err() != nil {
				return r.samples, ctx.Err()
			}
			if err := s.run(ctx); err != nil {
				if ctx.Err() != nil {
					return r.samples, ctx.Err()
				}
				return r.samples, fmt.Errorf("reference round %d, %s: %w", round, s.name, err)
			}
		}
	}
	return r.samples, nil
}

// refStep is one run of a round.
type refStep struct {
	name string
	run  func(context.Context) error
}

// steps returns one round's runs in order, for the quantities cfg.Only names (all without
// it): each tool right before the meter of ours it calibrates in odd rounds, right after it
// in even rounds.
func (r *refRun) steps(round int) []refStep {
	pairs := r.pairs()
	if round%2 == 0 {
		for _, p := range pairs {
			p[0], p[1] = p[1], p[0]
		}
	}
	var steps []refStep
	for _, p := range pairs {
		steps = append(steps, p...)
	}
	return steps
}

// pairs returns one round's runs as pairs of the tool and ours, in the order a round runs
// them: the jitter's pair JitterRepeat times, its order alternating, the first with the
// kernel-stamped run of ours as a third.
func (r *refRun) pairs() [][]refStep {
	var pairs [][]refStep
	if r.measures(RefThroughput) {
		pairs = append(pairs, []refStep{{"iperf3 tcp", r.iperf3TCP}, {"tcp stream", r.tcpStream}})
	}
	if r.measures(RefRTT) {
		for _, mode := range []string{RRBusy, RRPaced} {
			for _, proto := range []string{RRUDP, RRTCP} {
				pairs = append(pairs, []refStep{
					{"sockperf " + proto + " " + mode, func(ctx context.Context) error { return r.sockperf(ctx, proto, mode) }},
					{"request-response " + proto + " " + mode, func(ctx context.Context) error { return r.rr(ctx, proto, mode) }}})
			}
		}
		last := &pairs[len(pairs)-1] // sockperf's paced TCP round trip, next to the connect
		*last = append(*last, refStep{"tcp connect", r.tcpPing})
	}
	if r.measures(RefJitter) {
		for i := range r.cfg.JitterRepeat {
			p := []refStep{{"iperf3 udp", r.iperf3UDP}, {"udp jitter", r.udpJitter}}
			if i%2 == 1 {
				p[0], p[1] = p[1], p[0]
			}
			if i == 0 {
				p = append(p, refStep{"udp jitter, kernel stamps", r.udpJitterKernel})
			}
			pairs = append(pairs, p)
		}
	}
	return pairs
}

// measures says whether the run calibrates quantity q.
func (r *refRun) measures(q string) bool {
	return len(r.cfg.Only) == 0 || slices.Contains(r.cfg.Only, q)
}

// lookTools finds every tool in PATH, or names the missing ones and how to install them.
func lookTools(names ...string) (map[string]string, error) {
	paths := map[string]string{}
	var missing []string
	for _, n := range names {
		p, err := exec.LookPath(n)
		if err != nil {
			missing = append(missing, n)
			continue
		}
		paths[n] = p
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("reference: %s not found in PATH: install the reference tools with %s", strings.Join(missing, " and "), refInstall)
	}
	return paths, nil
}

// refRun is one Reference call: where it runs and what it measured so far.
type refRun struct {
	ep      Endpoints
	cfg     ReferenceConfig
	tools   map[string]string
	target  string
	start   time.Time
	samples []stats.Sample
	seq     map[string]int
}

// add appends a sample of m taken t seconds after the start of Reference.
func (r *refRun) add(m stats.Metric, t, v float64) {
	r.samples = append(r.samples, stats.Sample{Seq: r.seq[m.Name], T: t, Metric: m, Value: v})
	r.seq[m.Name]++
}

// since returns seconds from the start of Reference to at.
func (r *refRun) since(at time.Time) float64 { return at.Sub(r.start).Seconds() }

// ours runs one of our meters and keeps its samples of the metrics in rename, renamed.
func (r *refRun) ours(ctx context.Context, run func(context.Context) ([]stats.Sample, error), rename map[stats.Metric]stats.Metric) error {
	t0 := r.since(time.Now())
	samples, err := run(ctx)
	// Samples of a cancelled run are kept: the meters return only complete measurements.
	for _, s := range samples {
		if m, ok := rename[s.Metric]; ok {
			r.add(m, t0+s.T, s.Value)
		}
	}
	return err
}

// secs gives a run's length d in whole seconds, as iperf3 and sockperf take -t.
func secs(d Duration) string { return strconv.Itoa(int(time.Duration(d) / time.Second)) }

func portArg(p uint16) string { return strconv.Itoa(int(p)) }

func (r *refRun) iperf3TCP(ctx context.Context) error {
	port := r.cfg.port(0)
	srv, err := startServer(ctx, r.ep.Server, port, r.tools["iperf3"], "-s", "-1", "-p", portArg(port))
	if err != nil {
		return err
	}
	defer srv.stop()
	t0 := r.since(time.Now())
	var out bytes.Buffer
	_, cerr := runClient(ctx, r.ep.Client, &out, r.tools["iperf3"], "-c", r.target, "-p", portArg(port),
		"-t", secs(r.cfg.Duration), "-i", strconv.FormatFloat(time.Duration(r.cfg.Interval).Seconds(), 'f', -1, 64), "-J")
	res, perr := parseIperf3(out.Bytes())
	if err := toolResult("iperf3", cerr, perr); err != nil {
		return err
	}
	if len(res.Intervals) == 0 {
		return errors.New("iperf3 reported no intervals")
	}
	for _, iv := range res.Intervals {
		r.add(refThroughputIperf3, t0+iv.End, iv.BitsPerSecond)
	}
	return nil
}

func (r *refRun) tcpStream(ctx context.Context) error {
	return r.ours(ctx, func(ctx context.Context) ([]stats.Sample, error) {
		return TCPThroughput(ctx, r.ep, r.cfg.streamConfig())
	}, map[stats.Metric]stats.Metric{stats.Throughput: refThroughputOurs})
}

// sockperf runs one sockperf ping-pong in proto (RRUDP or RRTCP) and mode (RRBusy: as fast
// as replies come, RRPaced: one message per PingInterval) for RRDuration.
func (r *refRun) sockperf(ctx context.Context, proto, mode string) error {
	f, err := os.CreateTemp("", "edgebpf-sockperf-"+strconv.Itoa(os.Getpid())+"-*.csv")
	if err != nil {
		return fmt.Errorf("create sockperf log: %w", err)
	}
	logPath := f.Name()
	f.Close()
	defer os.Remove(logPath)

	port, tcp := r.cfg.port(6), []string{}
	if proto == RRTCP {
		port, tcp = r.cfg.port(1), []string{"--tcp"}
	}
	start := startUDPServer
	if proto == RRTCP {
		start = startServer
	}
	srv, err := start(ctx, r.ep.Server, port, r.tools["sockperf"], append(append([]string{"server"}, tcp...), "-i", "0.0.0.0", "-p", portArg(port))...)
	if err != nil {
		return err
	}
	defer srv.stop()
	mps := "max"
	if mode == RRPaced {
		mps = strconv.Itoa(max(1, int(math.Round(float64(time.Second)/float64(r.cfg.PingInterval)))))
	}
	t0 := r.since(time.Now())
	args := append(append([]string{"ping-pong"}, tcp...), "-i", r.target, "-p", portArg(port),
		"-t", strconv.Itoa(int(time.Duration(r.cfg.RRDuration)/time.Second)), "-m", strconv.Itoa(refMsgSize),
		"--mps="+mps, "--full-rtt", "--full-log", logPath)
	out, cerr := runClient(ctx, r.ep.Client, nil, r.tools["sockperf"], args...)
	if cerr != nil {
		return toolResult("sockperf", cerr, nil)
	}
	log, err := os.ReadFile(logPath)
	if err != nil {
		return fmt.Errorf("read sockperf log: %w", err)
	}
	pkts, err := parseSockperfLog(log)
	if err != nil {
		// sockperf exits 0 even when it cannot connect; its output says why.
		if msg := lastLine(out); msg != "" {
			return fmt.Errorf("sockperf: %w (sockperf said: %s)", err, msg)
		}
		return fmt.Errorf("sockperf: %w", err)
	}
	tx0 := pkts[0].TxTime
	m := qualify(RRMetric(proto, mode), "sockperf")
	// A busy run logs a message every few microseconds: keep every k-th, evenly over the
	// run, about as many as RequestResponse records (the median needs no more).
	stride := max(1, (len(pkts)+r.cfg.BusyCount-1)/r.cfg.BusyCount)
	for i := 0; i < len(pkts); i += stride {
		r.add(m, t0+pkts[i].TxTime-tx0, pkts[i].RTT)
	}
	return nil
}

// rr runs RequestResponse in proto and mode, the counterpart of sockperf.
func (r *refRun) rr(ctx context.Context, proto, mode string) error {
	m := RRMetric(proto, mode)
	return r.ours(ctx, func(ctx context.Context) ([]stats.Sample, error) {
		return RequestResponse(ctx, r.ep, r.cfg.rrConfig(proto, mode))
	}, map[stats.Metric]stats.Metric{m: qualify(m, "edgebpf")})
}

func (r *refRun) tcpPing(ctx context.Context) error {
	return r.ours(ctx, func(ctx context.Context) ([]stats.Sample, error) {
		return ConnectRTT(ctx, r.ep, r.cfg.pingConfig())
	}, map[stats.Metric]stats.Metric{stats.RTT: refRTTConnect})
}

func (r *refRun) iperf3UDP(ctx context.Context) error {
	port := r.cfg.port(2)
	// The receiving server's intervals carry the jitter: it writes them as JSON (-J) and the
	// client passes them on (--get-server-output).
	ivl := strconv.FormatFloat(time.Duration(r.cfg.JitterInterval).Seconds(), 'f', -1, 64)
	srv, err := startServer(ctx, r.ep.Server, port, r.tools["iperf3"], "-s", "-1", "-J", "-i", ivl, "-p", portArg(port))
	if err != nil {
		return err
	}
	defer srv.stop()
	var out bytes.Buffer
	t0 := r.since(time.Now())
	_, cerr := runClient(ctx, r.ep.Client, &out, r.tools["iperf3"], "-c", r.target, "-p", portArg(port), "-u",
		"-b", strconv.FormatFloat(float64(r.cfg.JitterRate), 'f', 0, 64), "-l", strconv.Itoa(r.cfg.Size), "-t", secs(r.cfg.JitterDuration),
		"-i", ivl, "-J", "--get-server-output")
	res, perr := parseIperf3(out.Bytes())
	if err := toolResult("iperf3", cerr, perr); err != nil {
		return err
	}
	if res.UDP == nil {
		return errors.New("iperf3 reported no UDP stream in end.streams")
	}
	t := r.since(time.Now())
	n := 0
	for _, iv := range res.UDP.Intervals {
		// The server closes with a stub of an interval after the last datagram: only whole
		// intervals count, as UDPJitter reports only those.
		if iv.Seconds >= 0.5*time.Duration(r.cfg.JitterInterval).Seconds() {
			r.add(refJitterIperf3, t0+iv.End, iv.Jitter)
			n++
		}
	}
	if n == 0 {
		r.add(refJitterIperf3, t, res.UDP.Jitter)
	}
	r.add(refLossIperf3, t, res.UDP.LostPercent)
	return nil
}

func (r *refRun) udpJitter(ctx context.Context) error {
	return r.ours(ctx, func(ctx context.Context) ([]stats.Sample, error) {
		return UDPJitter(ctx, r.ep, r.cfg.jitterConfig(RxStampsUser))
	}, map[stats.Metric]stats.Metric{stats.Jitter: refJitterOurs, stats.Loss: refLossOurs})
}

func (r *refRun) udpJitterKernel(ctx context.Context) error {
	return r.ours(ctx, func(ctx context.Context) ([]stats.Sample, error) {
		return UDPJitter(ctx, r.ep, r.cfg.jitterConfig(RxStampsKernel))
	}, map[stats.Metric]stats.Metric{stats.Jitter: refJitterOursKernel, stats.Loss: refLossOursKernel})
}

// toolResult combines a tool's exit and the parse of its output: iperf3 reports its own
// errors in its JSON, which say more than an exit status.
func toolResult(name string, runErr, parseErr error) error {
	var te *iperf3Error
	switch {
	case errors.As(parseErr, &te):
		return parseErr
	case runErr != nil:
		return runErr
	case parseErr != nil:
		return fmt.Errorf("%s output: %w", name, parseErr)
	}
	return nil
}

// iperf3Result is what Reference reads from iperf3 -J.
type iperf3Result struct {
	Intervals []iperf3Interval
	UDP       *iperf3UDP // end.streams[0].udp; nil for TCP
}

type iperf3Interval struct {
	End           float64 // seconds since the start of the test
	BitsPerSecond float64
}

type iperf3UDP struct {
	Jitter      float64 // seconds, the final estimate
	LostPercent float64
	// Intervals are the receiving server's intervals with their jitter, where the output
	// carries them (--get-server-output with a server started with -J).
	Intervals []iperf3Jitter
}

// iperf3Jitter is the running jitter at the end of one interval.
type iperf3Jitter struct {
	End     float64 // seconds since the start of the test
	Seconds float64 // the interval's length
	Jitter  float64 // seconds
}

// iperf3Error is an error iperf3 reported in its JSON output.
type iperf3Error struct{ msg string }

func (e *iperf3Error) Error() string { return "iperf3: " + e.msg }

// parseIperf3 reads the output of iperf3 -c -J: every interval's sum that is not omitted,
// and, for a UDP test, the first stream's jitter and loss. Output that is not iperf3's JSON,
// a reported error (returned as *iperf3Error) and values that are missing, negative or not
// finite are errors.
func parseIperf3(data []byte) (iperf3Result, error) {
	var doc struct {
		Intervals []struct {
			Sum *struct {
				End           *float64 `json:"end"`
				BitsPerSecond *float64 `json:"bits_per_second"`
				Omitted       bool     `json:"omitted"`
			} `json:"sum"`
		} `json:"intervals"`
		End struct {
			Streams []struct {
				UDP *struct {
					JitterMs    *float64 `json:"jitter_ms"`
					LostPercent *float64 `json:"lost_percent"`
				} `json:"udp"`
			} `json:"streams"`
		} `json:"end"`
		Error  string `json:"error"`
		Server *struct {
			Intervals []struct {
				Sum *struct {
					End      *float64 `json:"end"`
					Seconds  float64  `json:"seconds"`
					JitterMs *float64 `json:"jitter_ms"`
					Omitted  bool     `json:"omitted"`
				} `json:"sum"`
			} `json:"intervals"`
		} `json:"server_output_json"`
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return iperf3Result{}, errors.New("no output")
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		return iperf3Result{}, fmt.Errorf("not iperf3 JSON: %w", err)
	}
	if doc.Error != "" {
		return iperf3Result{}, &iperf3Error{msg: doc.Error}
	}
	var res iperf3Result
	for i, iv := range doc.Intervals {
		if iv.Sum == nil || iv.Sum.End == nil || iv.Sum.BitsPerSecond == nil {
			return iperf3Result{}, fmt.Errorf("interval %d has no sum with end and bits_per_second", i)
		}
		if !finiteNonNeg(*iv.Sum.End) || !finiteNonNeg(*iv.Sum.BitsPerSecond) {
			return iperf3Result{}, fmt.Errorf("interval %d: end %g s or %g bit/s is not a non-negative number", i, *iv.Sum.End, *iv.Sum.BitsPerSecond)
		}
		if iv.Sum.Omitted {
			continue
		}
		res.Intervals = append(res.Intervals, iperf3Interval{End: *iv.Sum.End, BitsPerSecond: *iv.Sum.BitsPerSecond})
	}
	if s := doc.End.Streams; len(s) > 0 && s[0].UDP != nil {
		u := s[0].UDP
		if u.JitterMs == nil || u.LostPercent == nil {
			return iperf3Result{}, errors.New("end.streams[0].udp has no jitter_ms or lost_percent")
		}
		if !finiteNonNeg(*u.JitterMs) || !finiteNonNeg(*u.LostPercent) || *u.LostPercent > 100 {
			return iperf3Result{}, fmt.Errorf("end.streams[0].udp: jitter %g ms or loss %g %% is out of range", *u.JitterMs, *u.LostPercent)
		}
		res.UDP = &iperf3UDP{Jitter: *u.JitterMs / 1e3, LostPercent: *u.LostPercent}
		if doc.Server != nil {
			for i, iv := range doc.Server.Intervals {
				if iv.Sum == nil || iv.Sum.End == nil || iv.Sum.JitterMs == nil || !finiteNonNeg(*iv.Sum.End) || !finiteNonNeg(*iv.Sum.JitterMs) {
					return iperf3Result{}, fmt.Errorf("server_output_json interval %d has no sum with a non-negative end and jitter_ms", i)
				}
				if !iv.Sum.Omitted {
					res.UDP.Intervals = append(res.UDP.Intervals, iperf3Jitter{End: *iv.Sum.End, Seconds: iv.Sum.Seconds, Jitter: *iv.Sum.JitterMs / 1e3})
				}
			}
		}
	}
	return res, nil
}

func finiteNonNeg(v float64) bool { return v >= 0 && !math.IsInf(v, 0) }

// sockperfPacket is one line of sockperf's --full-log.
type sockperfPacket struct {
	Seq    int
	TxTime float64 // seconds on sockperf's own clock
	RTT    float64 // seconds
}

// sockperfLogHeader opens the per-message table of sockperf's --full-log (3.7).
const sockperfLogHeader = "packet, txTime(sec), rxTime(sec), rtt(usec)"

// parseSockperfLog reads the per-message table of a sockperf ping-pong --full-log written
// with --full-rtt: after a summary, the header line, then one "packet, txTime, rxTime, rtt"
// line per message up to a line of dashes or the end. A log without the table or without a
// message, and a line that is not four numbers with a non-negative, finite round trip, are
// errors.
func parseSockperfLog(data []byte) ([]sockperfPacket, error) {
	sc := bufio.NewScanner(bytes.NewReader(data))
	inTable := false
	var out []sockperfPacket
	for line := 1; sc.Scan(); line++ {
		text := strings.TrimSpace(sc.Text())
		if !inTable {
			inTable = text == sockperfLogHeader
			continue
		}
		if text == "" {
			continue
		}
		if strings.HasPrefix(text, "---") {
			break
		}
		f := strings.Split(text, ",")
		if len(f) != 4 {
			return nil, fmt.Errorf("sockperf log line %d: %q is not four comma-separated fields", line, text)
		}
		seq, err := strconv.Atoi(strings.TrimSpace(f[0]))
		if err != nil {
			return nil, fmt.Errorf("sockperf log line %d: packet %q is not an integer", line, f[0])
		}
		var v [3]float64
		for i, s := range f[1:] {
			v[i], err = strconv.ParseFloat(strings.TrimSpace(s), 64)
			if err != nil || !finiteNonNeg(v[i]) {
				return nil, fmt.Errorf("sockperf log line %d: %q is not a non-negative number", line, strings.TrimSpace(s))
			}
		}
		out = append(out, sockperfPacket{Seq: seq, TxTime: v[0], RTT: v[2] / 1e6})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read sockperf log: %w", err)
	}
	if !inTable {
		return nil, errors.New("sockperf log holds no per-message table")
	}
	if len(out) == 0 {
		return nil, errors.New("sockperf log holds no message")
	}
	return out, nil
}

// listening reports whether the /proc/net/tcp or tcp6 table in data holds a socket
// listening on port (state 0A).
func listening(data []byte, port uint16) (bool, error) { return boundIn(data, port, "0A") }

// boundIn reports whether the /proc/net table in data holds a socket on local port in
// state (hexadecimal, as the table writes it: 0A a listening TCP socket, 07 a bound UDP
// one).
func boundIn(data []byte, port uint16, state string) (bool, error) {
	sc := bufio.NewScanner(bytes.NewReader(data))
	for first := true; sc.Scan(); first = false {
		fields := strings.Fields(sc.Text())
		if first && len(fields) > 0 && fields[0] == "sl" {
			continue
		}
		if len(fields) < 4 {
			return false, fmt.Errorf("short line %q", sc.Text())
		}
		_, hexPort, ok := strings.Cut(fields[1], ":")
		if !ok {
			return false, fmt.Errorf("local address %q has no port", fields[1])
		}
		p, err := strconv.ParseUint(hexPort, 16, 16)
		if err != nil {
			return false, fmt.Errorf("local port %q is not hexadecimal", hexPort)
		}
		if fields[3] == state && uint16(p) == port {
			return true, nil
		}
	}
	return false, sc.Err()
}

// listenPort is where a tool's server waits for clients: a TCP or a UDP port.
type listenPort struct {
	port uint16
	udp  bool
}

// listeningHere reports whether a TCP socket listens on (or a UDP socket is bound to)
// lp's port in the network namespace of the calling thread, which must be locked to it.
func listeningHere(lp listenPort) (bool, error) {
	files, state := []string{"/proc/thread-self/net/tcp", "/proc/thread-self/net/tcp6"}, "0A"
	if lp.udp {
		files, state = []string{"/proc/thread-self/net/udp", "/proc/thread-self/net/udp6"}, "07"
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if errors.Is(err, fs.ErrNotExist) {
			continue // no IPv6
		}
		if err != nil {
			return false, err
		}
		ok, err := boundIn(data, lp.port, state)
		if err != nil {
			return false, fmt.Errorf("%s: %w", f, err)
		}
		if ok {
			return true, nil
		}
	}
	return false, nil
}

// toolProc is a reference tool running in a namespace.
type toolProc struct {
	name    string
	cmd     *exec.Cmd
	output  *tailBuffer   // stderr, and stdout unless the caller takes it
	done    chan struct{} // closed once the process was waited for and Do returned
	waitErr error         // cmd.Wait's result, valid after done
}

// startTool starts path with args inside ns and, if listen is not 0, waits until a socket
// listens on that TCP port in ns. The process is forked from the thread ns.Do runs on and
// that thread stays locked to it until the process has exited: the parent-death signal
// follows the forking thread, so the tool is killed when edgebpf dies, never before. ctx
// kills the process. Standard output goes to stdout if it is not nil. On error nothing is
// left running.
func startTool(ctx context.Context, ns NS, role cpupin.Role, listen listenPort, stdout io.Writer, path string, args ...string) (*toolProc, error) {
	cmd := exec.CommandContext(ctx, path, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	cmd.WaitDelay = toolWaitDelay
	p := &toolProc{name: toolName(path, args), cmd: cmd, output: &tailBuffer{}, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = p.output, p.output
	if stdout != nil {
		cmd.Stdout = stdout
	}
	ready := make(chan error, 1)
	go func() {
		defer close(p.done)
		ran := false
		err := ns.Do(func() error {
			ran = true
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			// The process inherits the forking thread's CPU affinity.
			defer cpupin.Thread(ctx, role)()
			p.waitErr = p.run(ctx, listen, ready)
			return nil
		})
		if !ran {
			ready <- fmt.Errorf("start %s: %w", p.name, err)
		}
	}()
	if err := <-ready; err != nil {
		<-p.done
		return nil, err
	}
	return p, nil
}

// run starts the process on the calling thread, reports on ready when it is started (and
// listens), and returns Wait's result once the process has exited. It sends exactly one
// value on ready.
func (p *toolProc) run(ctx context.Context, listen listenPort, ready chan<- error) error {
	if listen.port != 0 {
		if busy, err := listeningHere(listen); err != nil || busy {
			ready <- errors.Join(err, fmt.Errorf("port %d is already in use in the server's namespace", listen.port))
			return nil
		}
	}
	if err := p.cmd.Start(); err != nil {
		ready <- fmt.Errorf("start %s: %w", p.name, err)
		return nil
	}
	exited := make(chan error, 1)
	go func() { exited <- p.cmd.Wait() }()
	if listen.port == 0 {
		ready <- nil
		return <-exited
	}
	deadline := time.Now().Add(serverStartTimeout)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		ok, err := listeningHere(listen)
		switch {
		case err != nil:
			err = fmt.Errorf("%s: check for its listening socket: %w", p.name, err)
		case ok:
			ready <- nil
			return <-exited
		case time.Now().After(deadline):
			err = fmt.Errorf("%s does not listen on port %d after %v%s", p.name, listen.port, serverStartTimeout, p.said())
		}
		if err == nil {
			select {
			case <-ctx.Done():
				err = ctx.Err()
			case werr := <-exited:
				if ctx.Err() != nil {
					ready <- ctx.Err() // ctx killed it
					return werr
				}
				ready <- fmt.Errorf("%s exited before listening on port %d: %v%s", p.name, listen.port, werr, p.said())
				return werr
			case <-tick.C:
				continue
			}
		}
		_ = p.cmd.Process.Kill()
		werr := <-exited
		ready <- err
		return werr
	}
}

// said returns the tool's last line of output for an error message, or "".
func (p *toolProc) said() string {
	if l := lastLine(p.output.Bytes()); l != "" {
		return " (" + l + ")"
	}
	return ""
}

// stop kills the process, if it still runs, and waits for it.
func (p *toolProc) stop() {
	_ = p.cmd.Process.Kill() // os.ErrProcessDone if it already exited
	<-p.done
}

// startServer starts a tool's server in ns and waits until it listens on TCP port.
func startServer(ctx context.Context, ns NS, port uint16, path string, args ...string) (*toolProc, error) {
	return startTool(ctx, ns, cpupin.Server, listenPort{port: port}, nil, path, args...)
}

// startUDPServer starts a tool's server in ns and waits until it is bound to UDP port.
func startUDPServer(ctx context.Context, ns NS, port uint16, path string, args ...string) (*toolProc, error) {
	return startTool(ctx, ns, cpupin.Server, listenPort{port: port, udp: true}, nil, path, args...)
}

// runClient runs a tool's client in ns to its end, its standard output to stdout if not
// nil, and returns what the tool wrote otherwise (its standard error at least).
func runClient(ctx context.Context, ns NS, stdout io.Writer, path string, args ...string) ([]byte, error) {
	p, err := startTool(ctx, ns, cpupin.Client, listenPort{}, stdout, path, args...)
	if err != nil {
		return nil, err
	}
	<-p.done
	out := p.output.Bytes()
	switch {
	case ctx.Err() != nil:
		return out, ctx.Err()
	case p.waitErr != nil:
		return out, fmt.Errorf("%s: %w%s", p.name, p.waitErr, p.said())
	}
	return out, nil
}

// toolName names a tool run in messages: the program and its first argument that is not a
// flag value, such as "iperf3 -s" or "sockperf ping-pong".
func toolName(path string, args []string) string {
	name := path[strings.LastIndexByte(path, '/')+1:]
	if len(args) > 0 {
		name += " " + args[0]
	}
	return name
}

// tailBuffer keeps the last toolOutLimit bytes written to it; it is safe for concurrent
// use.
type tailBuffer struct {
	mu  sync.Mutex
	buf []byte
}

func (b *tailBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf = append(b.buf, p...)
	if over := len(b.buf) - toolOutLimit; over > 0 {
		b.buf = append(b.buf[:0], b.buf[over:]...)
	}
	return len(p), nil
}

// Bytes returns a copy of what the buffer holds.
func (b *tailBuffer) Bytes() []byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	return bytes.Clone(b.buf)
}

// lastLine returns the last line of a tool's output that says something, without terminal
// colour codes and without "---" separators; "" if there is none.
func lastLine(out []byte) string {
	lines := strings.Split(string(out), "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		l := strings.TrimSpace(stripANSI(lines[i]))
		if l != "" && !strings.HasPrefix(l, "---") {
			return l
		}
	}
	return ""
}

// stripANSI removes terminal escape sequences (ESC [ ... letter) such as sockperf's colours.
func stripANSI(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == 0x1b && i+1 < len(s) && s[i+1] == '[' {
			j := i + 2
			for j < len(s) && !(s[j] >= '@' && s[j] <= '~') {
				j++
			}
			i = j
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
