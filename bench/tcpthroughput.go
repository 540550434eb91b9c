package bench

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/edgebpf/edgebpf/internal/cpupin"
	"github.com/edgebpf/edgebpf/stats"
)

// TCPThroughputConfig configures TCPThroughput. Zero-valued fields take the defaults given with
// them.
type TCPThroughputConfig struct {
	// Port is the TCP port the receiver listens on. Default 5202.
	Port uint16 `json:"port,omitempty"`
	// Duration is how long throughput is recorded, after Omit. Default 10s.
	Duration Duration `json:"duration"`
	// Interval is the length of one throughput sample. Default 1s.
	Interval Duration `json:"interval"`
	// Streams is the number of parallel connections. Default 1.
	Streams int `json:"streams,omitempty"`
	// Rate is the total payload rate in bit/s over all streams; writes are paced to it.
	// 0 sends as fast as the path allows.
	Rate Rate `json:"rate,omitempty"`
	// Omit is a warm-up sent but not recorded, like iperf3 -O. Default 0.
	Omit Duration `json:"omit,omitempty"`
	// BufSize is the bytes per read and write syscall. Default 128 KiB (iperf3's default).
	BufSize int `json:"-"`
}

const (
	maxStreams = 128
	minRate    = 1e5 // bit/s; slower pacing leaves most intervals empty.
	minBufSize = 1 << 10
	maxBufSize = 16 << 20

	// streamConnectTimeout bounds each stream's connect and the wait for the receiver to
	// accept all streams (a proxy on the path may connect onwards only later).
	streamConnectTimeout = 3 * time.Second
	streamAcceptTimeout  = 5 * time.Second
)

func (c TCPThroughputConfig) withDefaults() TCPThroughputConfig {
	if c.Port == 0 {
		c.Port = 5202
	}
	if c.Duration == 0 {
		c.Duration = Duration(10 * time.Second)
	}
	if c.Interval == 0 {
		c.Interval = Duration(time.Second)
	}
	if c.Streams == 0 {
		c.Streams = 1
	}
	if c.BufSize == 0 {
		c.BufSize = 128 << 10
	}
	return c
}

// Validate reports every field of c that TCPThroughput cannot use, one sentence each. Zero
// fields are valid: they take their defaults.
func (c TCPThroughputConfig) Validate() error {
	d := c.withDefaults()
	var errs []error
	if d.Duration < 0 {
		errs = append(errs, fmt.Errorf("tcp stream: duration %v is negative: give how long to measure, or 0 for the default 10s", c.Duration))
	}
	if d.Interval < 0 {
		errs = append(errs, fmt.Errorf("tcp stream: interval %v is negative: give the length of one sample, or 0 for the default 1s", c.Interval))
	} else if d.Interval < Duration(10*time.Millisecond) {
		errs = append(errs, fmt.Errorf("tcp stream: interval %v is too short to measure: give at least 10ms", c.Interval))
	}
	if d.Duration >= 0 && d.Interval > 0 && d.Duration < d.Interval {
		errs = append(errs, fmt.Errorf("tcp stream: duration %v is shorter than interval %v: give a duration of at least one interval", d.Duration, d.Interval))
	}
	if d.Streams < 1 || d.Streams > maxStreams {
		errs = append(errs, fmt.Errorf("tcp stream: streams %d is out of range: give 1 to %d parallel connections, or 0 for one", c.Streams, maxStreams))
	}
	if c.Rate < 0 || (c.Rate > 0 && c.Rate < minRate) || math.IsNaN(float64(c.Rate)) || math.IsInf(float64(c.Rate), 0) {
		errs = append(errs, fmt.Errorf("tcp stream: rate %g bit/s cannot be paced: give at least %g bit/s, or 0 for unlimited", c.Rate, minRate))
	}
	if d.Omit < 0 {
		errs = append(errs, fmt.Errorf("tcp stream: omit %v is negative: give the warm-up to leave out, or 0 for none", c.Omit))
	}
	if d.BufSize < minBufSize || d.BufSize > maxBufSize {
		errs = append(errs, fmt.Errorf("tcp stream: buffer size %d is out of range: give %d to %d bytes, or 0 for the default 128 KiB", c.BufSize, minBufSize, maxBufSize))
	}
	return errors.Join(errs...)
}

// TCPThroughput measures bulk TCP throughput from ep.Client to ep.Target:cfg.Port, like iperf3
// -c: the client opens cfg.Streams connections and writes to them as fast as the path allows
// (or paced to cfg.Rate in total), a receiver listening on all addresses in ep.Server reads
// and counts the bytes. It measures at the receiver, so data queued in socket buffers or in
// a proxy is not counted as delivered.
//
// Both sides use raw blocking sockets with BufSize bytes per syscall and one goroutine per
// stream and side, which keeps the per-byte cost at iperf3's level. A paced sender shares one
// schedule across streams and writes chunks of about a millisecond of data.
//
// TCPThroughput returns one stats.Throughput sample in bit/s (payload) per Interval after Omit:
// Seq is the interval's index, T the end of the interval in seconds since TCPThroughput was
// called, and the value is the bytes received in the interval over its measured length. When
// Duration is not a multiple of Interval, the last, shorter interval is recorded only if it
// is at least half an Interval long. When ctx ends it returns within about 200 ms with the
// completed intervals and ctx.Err().
func TCPThroughput(ctx context.Context, ep Endpoints, cfg TCPThroughputConfig) ([]stats.Sample, error) {
	if err := errors.Join(checkEndpoints(ep), cfg.Validate()); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	start := time.Now()

	r, err := openStreams(ctx, ep, cfg)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("tcp stream to %s port %d: %w", ep.Target, cfg.Port, err)
	}
	r.start(ctx, cfg)
	samples, err := r.measure(ctx, start, cfg)
	r.stop()
	if err != nil && !errors.Is(err, ctx.Err()) {
		err = fmt.Errorf("tcp stream to %s port %d: %w", ep.Target, cfg.Port, err)
	}
	return samples, err
}

// streamRun holds the sockets and goroutines of one TCPThroughput.
type streamRun struct {
	senders, receivers []int
	received           atomic.Int64
	stopped            atomic.Bool
	wg                 sync.WaitGroup
	releaseProcs       func() // gives back the Ps the raw loops hold; see rawio.go

	failOnce sync.Once
	failed   chan struct{}
	err      error
}

// openStreams listens in ep.Server, connects cfg.Streams sockets from ep.Client and accepts
// them. On error every socket is closed.
func openStreams(ctx context.Context, ep Endpoints, cfg TCPThroughputConfig) (_ *streamRun, err error) {
	r := &streamRun{failed: make(chan struct{})}
	family, target := sockaddr(ep.Target, cfg.Port)
	lfd := -1
	defer func() {
		if lfd >= 0 {
			unix.Close(lfd)
		}
		if err != nil {
			r.closeAll()
		}
	}()
	err = ep.Server.Do(func() error {
		var err error
		lfd, err = listenTCP(family, cfg.Port, max(cfg.Streams, 128))
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("start receiver: %w", err)
	}
	err = ep.Client.Do(func() error {
		for i := range cfg.Streams {
			fd, err := unix.Socket(family, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, unix.IPPROTO_TCP)
			if err != nil {
				return fmt.Errorf("create socket: %w", err)
			}
			r.senders = append(r.senders, fd)
			if _, err := blockingConnect(fd, target, streamConnectTimeout); err != nil {
				return fmt.Errorf("connect stream %d: %w", i, err)
			}
			if err := setTimeout(fd, unix.SO_SNDTIMEO, pollTimeout); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	err = ep.Server.Do(func() error {
		deadline := time.Now().Add(streamAcceptTimeout)
		for len(r.receivers) < cfg.Streams {
			if err := ctx.Err(); err != nil {
				return err
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("accept: %d of %d streams arrived within %v", len(r.receivers), cfg.Streams, streamAcceptTimeout)
			}
			fd, _, err := unix.Accept4(lfd, unix.SOCK_CLOEXEC)
			if temporary(err) || errors.Is(err, unix.ECONNABORTED) {
				continue
			}
			if err != nil {
				return fmt.Errorf("accept: %w", err)
			}
			r.receivers = append(r.receivers, fd)
			if err := setTimeout(fd, unix.SO_RCVTIMEO, pollTimeout); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return r, nil
}

// start runs one receiver goroutine per accepted socket and one sender per client socket.
func (r *streamRun) start(ctx context.Context, cfg TCPThroughputConfig) {
	r.releaseProcs = holdProcs(len(r.receivers) + len(r.senders))
	chunk := cfg.BufSize
	var p *pacer
	if cfg.Rate > 0 {
		p = newPacer(float64(cfg.Rate))
		// About a millisecond of data per write keeps bursts short.
		chunk = min(max(int(cfg.Rate/8/1000), 512), cfg.BufSize)
	}
	for _, fd := range r.receivers {
		r.wg.Go(func() {
			defer cpupin.Thread(ctx, cpupin.Server)()
			r.receive(fd, cfg.BufSize)
		})
	}
	for _, fd := range r.senders {
		r.wg.Go(func() {
			defer cpupin.Thread(ctx, cpupin.Client)()
			r.send(fd, chunk, p)
		})
	}
}

func (r *streamRun) receive(fd, bufSize int) {
	buf := make([]byte, bufSize)
	for !r.stopped.Load() {
		n, err := rawRead(fd, buf)
		if n > 0 {
			r.received.Add(int64(n))
			continue
		}
		switch {
		case r.stopped.Load():
			return
		case err == nil:
			r.fail(errors.New("receive: the sender closed the connection early"))
			return
		case temporary(err):
		default:
			r.fail(fmt.Errorf("receive: %w", err))
			return
		}
	}
}

func (r *streamRun) send(fd, chunk int, p *pacer) {
	buf := make([]byte, chunk)
	for !r.stopped.Load() {
		if p != nil && !p.wait(len(buf), &r.stopped) {
			return
		}
		_, err := rawWrite(fd, buf)
		switch {
		case err == nil, temporary(err):
		case r.stopped.Load():
			return
		default:
			r.fail(fmt.Errorf("send: %w", err))
			return
		}
	}
}

func (r *streamRun) fail(err error) {
	r.failOnce.Do(func() {
		r.err = err
		close(r.failed)
	})
}

// measure records the throughput intervals until cfg.Duration after cfg.Omit has passed,
// ctx ends or a stream fails.
func (r *streamRun) measure(ctx context.Context, start time.Time, cfg TCPThroughputConfig) ([]stats.Sample, error) {
	timer := time.NewTimer(time.Duration(cfg.Omit))
	defer timer.Stop()
	select {
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-r.failed:
		return nil, r.err
	case <-timer.C:
	}
	var samples []stats.Sample
	prevT, prevB := time.Now(), r.received.Load()
	t0 := prevT
	for i, iv := range streamIntervals(time.Duration(cfg.Duration), time.Duration(cfg.Interval)) {
		timer.Reset(time.Until(t0.Add(iv.end)))
		select {
		case <-ctx.Done():
			return samples, ctx.Err()
		case <-r.failed:
			return samples, r.err
		case <-timer.C:
		}
		now, b := time.Now(), r.received.Load()
		if iv.record {
			samples = append(samples, stats.Sample{
				Seq:    i,
				T:      now.Sub(start).Seconds(),
				Metric: stats.Throughput,
				Value:  float64(b-prevB) * 8 / now.Sub(prevT).Seconds(),
			})
		}
		prevT, prevB = now, b
	}
	return samples, nil
}

// streamInterval is one reporting interval: its end relative to the start of recording and
// whether it is recorded.
type streamInterval struct {
	end    time.Duration
	record bool
}

// streamIntervals divides duration into intervals of length interval; a last, shorter one
// is recorded only if it is at least half an interval long.
func streamIntervals(duration, interval time.Duration) []streamInterval {
	var ivs []streamInterval
	end := interval
	for ; end <= duration; end += interval {
		ivs = append(ivs, streamInterval{end: end, record: true})
	}
	if rest := duration - (end - interval); rest > 0 {
		ivs = append(ivs, streamInterval{end: duration, record: 2*rest >= interval})
	}
	return ivs
}

// stop ends the goroutines, waking blocked syscalls by shutting the sockets down, and then
// closes the sockets.
func (r *streamRun) stop() {
	r.stopped.Store(true)
	for _, fd := range append(r.senders, r.receivers...) {
		_ = unix.Shutdown(fd, unix.SHUT_RDWR)
	}
	r.wg.Wait()
	if r.releaseProcs != nil {
		r.releaseProcs()
	}
	r.closeAll()
}

func (r *streamRun) closeAll() {
	for _, fd := range append(r.senders, r.receivers...) {
		unix.Close(fd)
	}
	r.senders, r.receivers = nil, nil
}

// pacer spaces writes of several goroutines to a total rate: each write reserves the next
// free slot of a shared schedule and waits for it. A sender that falls behind may catch up by
// at most pacerBurst.
type pacer struct {
	mu        sync.Mutex
	next      time.Duration // monotonic time of the next free slot
	perByteNs float64
}

const pacerBurst = 10 * time.Millisecond

func newPacer(rate float64) *pacer {
	return &pacer{next: monotonic(), perByteNs: 8e9 / rate}
}

// reserve books n bytes and returns how long to wait before sending them.
func (p *pacer) reserve(n int) time.Duration {
	now := monotonic()
	p.mu.Lock()
	defer p.mu.Unlock()
	p.next = max(p.next, now-pacerBurst)
	at := p.next
	p.next += time.Duration(float64(n) * p.perByteNs)
	return at - now
}

// wait reserves n bytes and sleeps until their slot. It returns false if stopped was set
// while waiting.
func (p *pacer) wait(n int, stopped *atomic.Bool) bool {
	for d := p.reserve(n); d > 0; d -= pollTimeout {
		if stopped.Load() {
			return false
		}
		time.Sleep(min(d, pollTimeout))
	}
	return !stopped.Load()
}
