package bench

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"runtime"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/edgebpf/edgebpf/internal/cpupin"
	"github.com/edgebpf/edgebpf/stats"
)

// RRConfig configures RequestResponse. Zero-valued fields take the defaults given with them.
type RRConfig struct {
	// Port is the port the echo server listens on, UDP and TCP alike. Default 5211.
	Port uint16 `json:"port,omitempty"`
	// Protocols are the transports to measure, in order: "udp", "tcp". Default both.
	Protocols []string `json:"protocols,omitempty"`
	// Modes are the regimes to measure, in order: "busy" (back-to-back round trips, as
	// netperf TCP_RR and sockperf ping-pong at --mps=max) and "paced" (one round trip per
	// Interval: an idle path, the thesis's regime). Default both.
	Modes []string `json:"modes,omitempty"`
	// Size is the request and response payload in bytes, 16 to 1400. Default 64.
	Size int `json:"size,omitempty"`
	// BusyCount is the number of round trips recorded in busy mode. Default 5000.
	BusyCount int `json:"busy_count,omitempty"`
	// PacedCount is the number of round trips recorded in paced mode. Default 200.
	PacedCount int `json:"paced_count,omitempty"`
	// Interval is the time between the starts of two paced round trips. Default 10ms.
	Interval Duration `json:"interval,omitempty"`
	// Warmup is the number of round trips made and not recorded before each mode: the
	// first ones pay for cold caches, ARP and, behind a proxy, session set-up. Default 20.
	Warmup int `json:"warmup,omitempty"`
	// Timeout bounds one round trip; a UDP request without a reply within it counts as
	// lost and is sent anew, a TCP one ends the meter with an error. Default 1s.
	Timeout Duration `json:"timeout,omitempty"`
}

// RequestResponse's protocols and modes (RRConfig.Protocols, RRConfig.Modes).
const (
	RRUDP   = "udp"
	RRTCP   = "tcp"
	RRBusy  = "busy"
	RRPaced = "paced"
)

const (
	maxRRSize = defaultUDPSize
	maxRRRuns = 1 << 20
)

func (c RRConfig) withDefaults() RRConfig {
	if c.Port == 0 {
		c.Port = 5211
	}
	if len(c.Protocols) == 0 {
		c.Protocols = []string{RRUDP, RRTCP}
	}
	if len(c.Modes) == 0 {
		c.Modes = []string{RRBusy, RRPaced}
	}
	if c.Size == 0 {
		c.Size = 64
	}
	if c.BusyCount == 0 {
		c.BusyCount = 5000
	}
	if c.PacedCount == 0 {
		c.PacedCount = 200
	}
	if c.Interval == 0 {
		c.Interval = Duration(10 * time.Millisecond)
	}
	if c.Warmup == 0 {
		c.Warmup = 20
	}
	if c.Timeout == 0 {
		c.Timeout = Duration(time.Second)
	}
	return c
}

// Validate reports every field of c that RequestResponse cannot use, one sentence each.
// Zero fields are valid: they take their defaults.
func (c RRConfig) Validate() error {
	const meter = "request-response"
	d := c.withDefaults()
	var errs []error
	for _, p := range c.Protocols {
		if p != RRUDP && p != RRTCP {
			errs = append(errs, fmt.Errorf("%s: protocol %q is unknown: use %q or %q", meter, p, RRUDP, RRTCP))
		}
	}
	for _, m := range c.Modes {
		if m != RRBusy && m != RRPaced {
			errs = append(errs, fmt.Errorf("%s: mode %q is unknown: use %q or %q", meter, m, RRBusy, RRPaced))
		}
	}
	if d.Size < udpHeaderLen || d.Size > maxRRSize {
		errs = append(errs, fmt.Errorf("%s: size %d is out of range: give %d to %d bytes, or 0 for the default 64", meter, c.Size, udpHeaderLen, maxRRSize))
	}
	for _, n := range []struct {
		name string
		v    int
	}{{"busy count", d.BusyCount}, {"paced count", d.PacedCount}, {"warmup", d.Warmup}} {
		if n.v < 0 || n.v > maxRRRuns {
			errs = append(errs, fmt.Errorf("%s: %s %d is out of range: give 1 to %d, or 0 for the default", meter, n.name, n.v, maxRRRuns))
		}
	}
	if d.Interval < 0 || d.Interval > Duration(time.Minute) {
		errs = append(errs, fmt.Errorf("%s: interval %v is out of range: give the time between paced round trips up to 1m, or 0 for the default 10ms", meter, c.Interval))
	}
	if d.Timeout < 0 {
		errs = append(errs, fmt.Errorf("%s: timeout %v is negative: give how long to wait for a reply, or 0 for the default 1s", meter, c.Timeout))
	}
	return errors.Join(errs...)
}

// RRMetric returns the metric RequestResponse records for protocol and mode: stats.RTT
// qualified as "rtt:<protocol>-rr-<mode>", such as rtt:udp-rr-busy, so that it never mixes
// with the connect round trip that the plain rtt of ConnectRTT is.
func RRMetric(protocol, mode string) stats.Metric {
	return qualify(stats.RTT, protocol+"-rr-"+mode)
}

// RequestResponse measures request-response round trips of Size bytes from ep.Client to
// an echo server in ep.Server at ep.Target:Port, like netperf TCP_RR and sockperf
// ping-pong: for each protocol and mode in the config's order, Warmup unrecorded round
// trips, then BusyCount back to back (busy) or PacedCount, one per Interval (paced). Client
// and server each run on a goroutine locked to its OS thread with a blocking socket (TCP
// with TCP_NODELAY on one connection per protocol and mode) read and written through raw
// syscalls, so that the Go scheduler takes no CPU from the path per round trip (rawio.go),
// and a round trip is timed with
// CLOCK_MONOTONIC read right before the request's send and right after the reply's receive,
// as sockperf --full-rtt does.
//
// It returns one sample per recorded round trip in seconds, metric RRMetric(protocol,
// mode), Seq counting from 0 per metric and T the seconds since RequestResponse started;
// summaries give p50 and p99. A UDP request lost on the way is sent anew (its time is not
// recorded). When ctx ends it returns within about a second with the samples so far and
// ctx.Err().
func RequestResponse(ctx context.Context, ep Endpoints, cfg RRConfig) ([]stats.Sample, error) {
	if err := errors.Join(checkEndpoints(ep), cfg.Validate()); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	origin := monotonic()
	var samples []stats.Sample
	for _, proto := range cfg.Protocols {
		for _, mode := range cfg.Modes {
			got, err := rrRun(ctx, ep, cfg, proto, mode, origin)
			samples = append(samples, got...)
			if err != nil {
				if ctx.Err() != nil {
					return samples, ctx.Err()
				}
				return samples, fmt.Errorf("request-response %s %s: %w", proto, mode, err)
			}
		}
	}
	return samples, nil
}

// rrRun runs one protocol in one mode: it starts the echo server, connects, and runs the
// client on a locked thread.
func rrRun(ctx context.Context, ep Endpoints, cfg RRConfig, proto, mode string, origin time.Duration) ([]stats.Sample, error) {
	// The client and the echo server each block in raw syscalls holding a P (rawio.go).
	defer holdProcs(2)()
	family, _ := sockaddr(ep.Target, cfg.Port)
	srv, err := startEcho(ctx, ep.Server, family, proto, cfg)
	if err != nil {
		return nil, err
	}
	defer srv.stop()
	fd, err := rrDial(ep, proto, cfg)
	if err != nil {
		return nil, err
	}
	count, interval := cfg.BusyCount, time.Duration(0)
	if mode == RRPaced {
		count, interval = cfg.PacedCount, time.Duration(cfg.Interval)
	}
	c := &rrClient{fd: fd, udp: proto == RRUDP, size: cfg.Size, metric: RRMetric(proto, mode), origin: origin}
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		defer cpupin.Thread(ctx, cpupin.Client)()
		done <- c.run(ctx, cfg.Warmup, count, interval)
	}()
	err = <-done
	// Closing the client's socket first ends the server's connection at once.
	unix.Close(fd)
	if serr := srv.stop(); err == nil && serr != nil {
		err = fmt.Errorf("echo server: %w", serr)
	}
	return c.samples, err
}

// rrDial opens the client's blocking socket in ep.Client, connected to the target.
func rrDial(ep Endpoints, proto string, cfg RRConfig) (int, error) {
	family, sa := sockaddr(ep.Target, cfg.Port)
	typ := unix.SOCK_DGRAM
	if proto == RRTCP {
		typ = unix.SOCK_STREAM
	}
	fd := -1
	err := ep.Client.Do(func() error {
		var err error
		if fd, err = unix.Socket(family, typ|unix.SOCK_CLOEXEC, 0); err != nil {
			return err
		}
		if proto == RRTCP {
			if err := unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1); err != nil {
				return fmt.Errorf("set TCP_NODELAY: %w", err)
			}
			_, err = blockingConnect(fd, sa, time.Duration(cfg.Timeout))
			return err
		}
		return unix.Connect(fd, sa)
	})
	if err == nil {
		err = setTimeout(fd, unix.SO_RCVTIMEO, time.Duration(cfg.Timeout))
	}
	if err != nil {
		if fd >= 0 {
			unix.Close(fd)
		}
		return -1, fmt.Errorf("connect %s to %s port %d in the client namespace: %w", proto, ep.Target, cfg.Port, err)
	}
	return fd, nil
}

// rrClient is the client side of one protocol and mode.
type rrClient struct {
	fd      int
	udp     bool
	size    int
	metric  stats.Metric
	origin  time.Duration
	samples []stats.Sample
	seq     uint64
}

// run makes warmup unrecorded round trips, then count recorded ones, each interval after
// the previous one's start (back to back for 0).
func (c *rrClient) run(ctx context.Context, warmup, count int, interval time.Duration) error {
	req, resp := make([]byte, c.size), make([]byte, c.size+1)
	c.samples = make([]stats.Sample, 0, count)
	next := monotonic()
	for i := range warmup + count {
		if (interval > 0 || i%64 == 0) && ctx.Err() != nil {
			return ctx.Err()
		}
		if interval > 0 {
			udpSleepUntil(int64(next))
			next += interval
		}
		t0, rtt, err := c.roundTrip(req, resp)
		if err != nil {
			return err
		}
		if i >= warmup {
			c.samples = append(c.samples, stats.Sample{Seq: i - warmup, T: (t0 - c.origin).Seconds(), Metric: c.metric, Value: rtt.Seconds()})
		}
	}
	return nil
}

// roundTrip sends one request and waits for its reply: a UDP request whose reply does not
// come within the socket's timeout is sent anew, a stale UDP reply is skipped. It returns
// when the request went out and the round trip's time.
func (c *rrClient) roundTrip(req, resp []byte) (time.Duration, time.Duration, error) {
	c.seq++
	binary.BigEndian.PutUint64(req[0:8], c.seq)
	for lost := 0; ; lost++ {
		t0 := monotonic()
		if err := writeFull(c.fd, req); err != nil && !(c.udp && errors.Is(err, unix.ECONNREFUSED)) {
			return 0, 0, fmt.Errorf("send request: %w", err)
		}
		for {
			err := c.readReply(resp)
			t1 := monotonic()
			switch {
			case err == nil && binary.BigEndian.Uint64(resp[0:8]) == c.seq:
				return t0, t1 - t0, nil
			case err == nil, errors.Is(err, unix.EINTR):
				continue // a late reply to an earlier request, or a signal: wait on
			case c.udp && (errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.ECONNREFUSED)) && lost < 10:
			default:
				return 0, 0, fmt.Errorf("receive reply: %w", err)
			}
			break
		}
	}
}

// readReply reads one reply of c.size bytes into resp.
func (c *rrClient) readReply(resp []byte) error {
	if c.udp {
		n, err := rawRead(c.fd, resp)
		if err == nil && n != c.size {
			return fmt.Errorf("reply of %d bytes, want %d", n, c.size)
		}
		return err
	}
	return readFull(c.fd, resp[:c.size])
}

// writeFull writes all of b to fd through raw syscalls (rawio.go), repeating a write a
// signal interrupted (EINTR) or cut short.
func writeFull(fd int, b []byte) error {
	for sent := 0; sent < len(b); {
		n, err := rawWrite(fd, b[sent:])
		switch {
		case errors.Is(err, unix.EINTR):
			continue
		case err != nil:
			return err
		}
		sent += n
	}
	return nil
}

// errPeerClosed is readFull's error when the other side closed the connection.
var errPeerClosed = errors.New("connection closed by the peer")

// readFull reads exactly len(b) bytes from the stream socket fd, through raw syscalls
// (rawio.go). A timeout before the first byte returns EAGAIN; once a message has begun, it
// waits for the rest. A signal (EINTR) only repeats the read.
func readFull(fd int, b []byte) error {
	for got := 0; got < len(b); {
		n, err := rawRead(fd, b[got:])
		switch {
		case errors.Is(err, unix.EINTR), got > 0 && errors.Is(err, unix.EAGAIN):
			continue
		case err != nil:
			return err
		case n == 0:
			return errPeerClosed
		}
		got += n
	}
	return nil
}

// echoServer answers every request with its own bytes, on a goroutine locked to its OS
// thread in the server's namespace.
type echoServer struct {
	fd      int
	udp     bool
	size    int
	stopped atomic.Bool
	done    chan struct{}
	err     error
	once    atomic.Bool
}

// startEcho binds the server's socket on all addresses of the target's family in ns and
// starts serving.
func startEcho(ctx context.Context, ns NS, family int, proto string, cfg RRConfig) (*echoServer, error) {
	s := &echoServer{fd: -1, udp: proto == RRUDP, size: cfg.Size, done: make(chan struct{})}
	err := ns.Do(func() error {
		if proto == RRTCP {
			fd, err := listenTCP(family, cfg.Port, 8)
			s.fd = fd
			return err
		}
		fd, err := unix.Socket(family, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		s.fd = fd
		if family == unix.AF_INET6 {
			if err := unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY, 0); err != nil {
				return err
			}
		}
		if err := unix.Bind(fd, anyAddr(family, cfg.Port)); err != nil {
			return err
		}
		return setTimeout(fd, unix.SO_RCVTIMEO, pollTimeout)
	})
	if err != nil {
		if s.fd >= 0 {
			unix.Close(s.fd)
		}
		return nil, fmt.Errorf("echo server on %s port %d: %w", proto, cfg.Port, err)
	}
	go func() {
		defer close(s.done)
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		defer cpupin.Thread(ctx, cpupin.Server)()
		if s.udp {
			s.err = s.serveUDP()
		} else {
			s.err = s.serveTCP()
		}
	}()
	return s, nil
}

// serveUDP echoes datagrams to their senders until stopped.
func (s *echoServer) serveUDP() error {
	buf := make([]byte, maxRRSize+1)
	var from unix.RawSockaddrAny
	for !s.stopped.Load() {
		fromLen := uint32(unsafe.Sizeof(from))
		n, err := rawRecvfrom(s.fd, buf, &from, &fromLen)
		switch {
		case err == nil:
			_ = rawSendto(s.fd, buf[:n], &from, fromLen) // a lost reply is the client's to retry
		case temporary(err):
		case s.stopped.Load():
			return nil
		default:
			return fmt.Errorf("recvfrom: %w", err)
		}
	}
	return nil
}

// serveTCP accepts connections one at a time and echoes requests of s.size bytes on each
// until the client closes it or the server is stopped.
func (s *echoServer) serveTCP() error {
	for !s.stopped.Load() {
		fd, _, err := unix.Accept4(s.fd, unix.SOCK_CLOEXEC)
		switch {
		case err == nil:
		case temporary(err), errors.Is(err, unix.ECONNABORTED):
			continue
		case s.stopped.Load():
			return nil
		default:
			return fmt.Errorf("accept: %w", err)
		}
		_ = unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1)
		_ = setTimeout(fd, unix.SO_RCVTIMEO, pollTimeout)
		err = s.echoConn(fd)
		unix.Close(fd)
		if err != nil {
			return err
		}
	}
	return nil
}

// echoConn echoes on one accepted connection until it closes or the server is stopped.
func (s *echoServer) echoConn(fd int) error {
	buf := make([]byte, s.size)
	for !s.stopped.Load() {
		err := readFull(fd, buf)
		switch {
		case err == nil:
		case temporary(err):
			continue
		case s.stopped.Load(), errors.Is(err, unix.ECONNRESET), errors.Is(err, errPeerClosed):
			return nil
		default:
			return fmt.Errorf("read request: %w", err)
		}
		if err := writeFull(fd, buf); err != nil {
			return nil // the client went away
		}
	}
	return nil
}

// stop ends the server, waits for it and closes its socket; it returns the server's error.
// It may be called more than once.
func (s *echoServer) stop() error {
	if s.once.Swap(true) {
		<-s.done
		return s.err
	}
	s.stopped.Store(true)
	_ = unix.Shutdown(s.fd, unix.SHUT_RDWR)
	<-s.done
	unix.Close(s.fd)
	return s.err
}
