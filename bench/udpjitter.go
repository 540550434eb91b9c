package bench

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/edgebpf/edgebpf/stats"
)

// UDPJitterConfig configures UDPJitter. Zero-valued fields take the defaults given with them.
type UDPJitterConfig struct {
	// Port is the UDP port the receiver listens on. Default 5203.
	Port uint16 `json:"port,omitempty"`
	// Rate is the target send rate in UDP payload bit/s, as iperf3 -b counts it (IP and
	// UDP headers excluded). Default 1e6 (the thesis's iperf3 -u -b 1M).
	Rate Rate `json:"rate"`
	// Size is the UDP payload of every datagram in bytes, 16 to 65507. Default 1400, which
	// with 28 bytes of IP and UDP headers fits the project's MTU of 1450.
	Size int `json:"size,omitempty"`
	// Duration is how long the sender sends. Default 10s (the thesis used 20 s).
	Duration Duration `json:"duration"`
	// Interval is how often the jitter is reported, as iperf3 -i reports it: the running
	// RFC 3550 estimate at the end of every whole Interval of the stream. Default 1s
	// (iperf3's); an Interval of Duration or longer reports only the final estimate.
	Interval Duration `json:"interval,omitempty"`
	// Grace is how long the receiver waits for late packets after the last send before
	// counting the missing ones as lost. Default 200ms.
	Grace time.Duration `json:"-"`
	// RxStamps says where a datagram's receive time is taken: RxStampsUser (the default)
	// after the receiver's recvmmsg returns, application to application like iperf3, or
	// RxStampsKernel from the kernel's receive timestamp.
	RxStamps string `json:"rx_stamps,omitempty"`
}

// Where UDPJitter takes receive times (UDPJitterConfig.RxStamps).
const (
	// RxStampsUser takes them in user space after recvmmsg returns, once per batch: the same
	// point on every path.
	RxStampsUser = "user"
	// RxStampsKernel takes the kernel's receive timestamp of each datagram (SO_TIMESTAMPNS),
	// which keeps the receiving goroutine's wake-ups out. Where the kernel takes it depends
	// on the path, so kernel-stamped figures do not compare across data planes: a datagram
	// crossing a veth into the receiver's namespace is stamped there, but one the eBPF proxy
	// moves with bpf_redirect_peer keeps the stamp it got entering the node's namespace,
	// before the proxy ran. Measured (issue 11, 4 x 4 s at 1 Mbit/s, interleaved): median
	// one-way delay 46.0 µs on direct and on ebpf with user-space stamps, but 11.7 µs on
	// direct and 6.9 µs on ebpf with kernel stamps, so the kernel's stamp moves with the
	// path; user-space stamps after a blocked recvmmsg are the one point every path shares.
	// Use kernel stamps for one path's noise floor (jitter 6 µs on direct against 88 µs
	// with user-space stamps on a loaded host).
	RxStampsKernel = "kernel"
)

func (c UDPJitterConfig) withDefaults() UDPJitterConfig {
	if c.Port == 0 {
		c.Port = 5203
	}
	if c.Rate == 0 {
		c.Rate = 1e6
	}
	if c.Size == 0 {
		c.Size = defaultUDPSize
	}
	if c.Duration == 0 {
		c.Duration = Duration(10 * time.Second)
	}
	if c.Grace == 0 {
		c.Grace = defaultUDPGrace
	}
	if c.Interval == 0 {
		c.Interval = Duration(time.Second)
	}
	if c.RxStamps == "" {
		c.RxStamps = RxStampsUser
	}
	return c
}

// Validate reports every field of c that UDPJitter cannot use, one sentence each. Zero fields
// are valid: they take their defaults.
func (c UDPJitterConfig) Validate() error {
	const meter = "udp jitter"
	d := c.withDefaults()
	errs := udpFieldErrors(meter, c.Size, c.Grace)
	if c.Duration < 0 {
		errs = append(errs, fmt.Errorf("%s: duration %v is negative: give how long to send, or 0 for the default 10s", meter, c.Duration))
	}
	if c.Interval < 0 || (c.Interval > 0 && c.Interval < Duration(10*time.Millisecond)) {
		errs = append(errs, fmt.Errorf("%s: interval %v is out of range: give at least 10ms between jitter reports, or 0 for the default 1s", meter, c.Interval))
	}
	// Judge whether a packet fits the duration only with a usable size and duration.
	size, dur := d.Size, max(d.Duration, 0)
	if len(udpFieldErrors(meter, c.Size, 0)) > 0 {
		size = 0
	}
	if err := udpRateError(meter, "rate", float64(d.Rate), size, time.Duration(dur)); err != nil {
		errs = append(errs, err)
	}
	if d.RxStamps != RxStampsKernel && d.RxStamps != RxStampsUser {
		errs = append(errs, fmt.Errorf("%s: receive timestamps %q are unknown: use %q or %q", meter, c.RxStamps, RxStampsKernel, RxStampsUser))
	}
	return errors.Join(errs...)
}

// UDPJitter measures one-way delay, RFC 3550 jitter and loss of a paced UDP stream from
// ep.Client to ep.Target:cfg.Port, received on all addresses in ep.Server, like the thesis's
// iperf3 -u -b 1M. The stream machinery is described in udpstream.go: every datagram carries
// its sequence number and CLOCK_MONOTONIC send time, and sender and receiver share the host's
// clock, so one-way delays need no clock synchronisation. Both times are taken in user space,
// application to application like iperf3, unless cfg.RxStamps asks for the kernel's receive
// timestamps (see RxStampsKernel for why that is not the default).
//
// UDPJitter returns one stats.OWD sample in seconds per received packet (Seq is the packet's
// sequence number, so lost packets leave gaps; T its send time), then one stats.Jitter
// sample per whole Interval of the stream (at least one): the RFC 3550 interarrival jitter in
// seconds at the Interval's end, computed exactly as iperf3 does for its intervals'
// jitter_ms (the last one is the final estimate, end.streams[0].udp.jitter_ms); one stats.Loss sample: the percentage of sent packets
// not received within Grace after the last send; and one stats.SendRate sample: the payload
// bit/s the sender achieved, which falls short of Rate when the sender cannot keep up. T is
// seconds since UDPJitter started.
//
// When ctx ends it returns within about 100 ms with the OWD samples so far and ctx.Err(),
// but without the jitter, loss and send-rate samples, which an interrupted stream would bias.
func UDPJitter(ctx context.Context, ep Endpoints, cfg UDPJitterConfig) ([]stats.Sample, error) {
	if err := errors.Join(checkUDPEndpoints(ep), cfg.Validate()); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	origin := udpNow()
	res, err := runUDPStream(ctx, ep, udpStreamConfig{
		port:        cfg.Port,
		rate:        float64(cfg.Rate),
		size:        cfg.Size,
		duration:    time.Duration(cfg.Duration),
		grace:       cfg.Grace,
		owdEvery:    1,
		kernelRx:    cfg.RxStamps == RxStampsKernel,
		jitterEvery: min(time.Duration(cfg.Interval), time.Duration(cfg.Duration)),
	})
	if res == nil {
		return nil, fmt.Errorf("udp jitter: %w", err)
	}
	samples := make([]stats.Sample, 0, len(res.owd)+3)
	for _, o := range res.owd {
		samples = append(samples, stats.Sample{
			Seq:    int(o.seq),
			T:      udpSince(origin, o.sent),
			Metric: stats.OWD,
			Value:  float64(o.owd) / 1e9,
		})
	}
	if !res.complete {
		if err != nil && !errors.Is(err, ctx.Err()) {
			err = fmt.Errorf("udp jitter: %w", err)
		}
		return samples, err
	}
	t := udpSince(origin, udpNow())
	for i, j := range res.jitters {
		samples = append(samples, stats.Sample{Seq: i, T: udpSince(origin, j.at), Metric: stats.Jitter, Value: j.value})
	}
	samples = append(samples,
		stats.Sample{T: t, Metric: stats.Loss, Value: res.lossPercent()},
		stats.Sample{T: t, Metric: stats.SendRate, Value: res.sendRate()},
	)
	return samples, nil
}
