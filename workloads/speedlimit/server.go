package speedlimit

import (
	"errors"
	"fmt"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/edgebpf/edgebpf/internal/cpupin"
	"github.com/edgebpf/edgebpf/workloads/speedlimit/wire"
)

// Mode is one of the thesis's three server configurations (its table 5.2).
type Mode string

// The configurations.
const (
	// Userspace is a plain UDP server: one thread receives every request, computes the
	// limit with the float formula and answers with sendto. No BPF at all.
	Userspace Mode = "userspace"
	// Mixed answers in XDP with the limit user space recomputes from the kernel's car count
	// on a timer and writes to a map.
	Mixed Mode = "mixed"
	// EBPF answers in XDP and computes the limit per request in the kernel, in fixed point.
	EBPF Mode = "ebpf"
)

// Modes lists the configurations in the thesis's order.
var Modes = []Mode{Userspace, Mixed, EBPF}

// ParseMode checks a configuration name.
func ParseMode(s string) (Mode, error) {
	if slices.Contains(Modes, Mode(s)) {
		return Mode(s), nil
	}
	names := make([]string, len(Modes))
	for i, m := range Modes {
		names[i] = string(m)
	}
	return "", fmt.Errorf("unknown speed-limit server mode %q: choose %s", s, strings.Join(names, ", "))
}

// DefaultPeriod is how often the mixed configuration recomputes the limit (the thesis: 1 s).
const DefaultPeriod = time.Second

// ServerConfig configures a Server.
type ServerConfig struct {
	Mode Mode
	// Port is the UDP port. Default wire.DefaultPort.
	Port uint16
	// Period is how often the mixed configuration recomputes the limit. Default 1s.
	Period time.Duration
	// NS is the namespace the server runs in: its socket is created there and its XDP
	// program attached there, to Iface, the interface the requests arrive on.
	NS    NS
	Iface string
	// PeerNS and PeerIface are the other end of Iface's veth pair, for native XDP
	// (see ResponderConfig). Optional.
	PeerNS    NS
	PeerIface string
	// XDP is the attach mode of the XDP configurations. Default XDPAuto.
	XDP XDPMode
	// Pinning, if not nil, pins the user-space loop's thread to the CPUs of its server role
	// and counts a failure to (package cpupin; a run's is cpupin.PinningFrom(ctx)).
	Pinning *cpupin.Pinning
}

func (c ServerConfig) withDefaults() ServerConfig {
	if c.Port == 0 {
		c.Port = wire.DefaultPort
	}
	if c.Period == 0 {
		c.Period = DefaultPeriod
	}
	if c.XDP == "" {
		c.XDP = XDPAuto
	}
	return c
}

// Validate says what in c a server cannot use.
func (c ServerConfig) Validate() error {
	var errs []error
	if _, err := ParseMode(string(c.Mode)); err != nil {
		errs = append(errs, err)
	}
	if c.Period < 0 {
		errs = append(errs, fmt.Errorf("period %v is negative: give how often the mixed server recomputes the limit, e.g. 1s", c.Period))
	}
	if c.XDP != "" {
		if _, err := ParseXDPMode(string(c.XDP)); err != nil {
			errs = append(errs, err)
		}
	}
	if c.NS == nil {
		errs = append(errs, errors.New("no namespace to run the speed-limit server in"))
	}
	if c.Mode != Userspace && c.Iface == "" {
		errs = append(errs, fmt.Errorf("the %s server needs the interface to attach its XDP program to", c.Mode))
	}
	return errors.Join(errs...)
}

// Server is a running speed-limit server in one of the three configurations.
//
// Every configuration binds a UDP socket to the port. In the user-space configuration it
// answers on it. In the XDP configurations the program answers every well-formed request
// before the stack sees it; the socket receives only what the program passed (malformed
// datagrams, see bpf/speedlimit.c) and answers none of them: the car counter belongs to the
// kernel, and user space never writes it. It holds the port so those datagrams are not
// answered with ICMP port unreachable either, and counts them.
type Server struct {
	cfg  ServerConfig
	resp *Responder // nil in the user-space configuration
	fd   int
	rcvb int

	stop    atomic.Bool
	wg      sync.WaitGroup
	errMu   sync.Mutex
	err     error
	closeMu sync.Mutex
	closed  bool
	tick    chan struct{} // closed to stop the mixed timer

	// Counters of the user-space loop; cars is the user-space configuration's car count,
	// owned by the loop's goroutine and read atomically by others.
	cars     atomic.Uint64
	answered atomic.Uint64
	left     atomic.Uint64
	ignored  atomic.Uint64
	updates  atomic.Uint64
}

// StartServer starts a server. It returns once the socket is bound and, for the XDP
// configurations, the program is attached; Close stops it.
func StartServer(cfg ServerConfig) (s *Server, err error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	s = &Server{cfg: cfg, fd: -1, tick: make(chan struct{})}
	started := s // the named result is nil once an error is returned
	defer func() {
		if err != nil {
			err = errors.Join(err, started.Close())
		}
	}()
	err = cfg.NS.Do(func() error {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, unix.IPPROTO_UDP)
		if err != nil {
			return fmt.Errorf("create udp socket: %w", err)
		}
		s.fd = fd
		if err := unix.Bind(fd, &unix.SockaddrInet4{Port: int(cfg.Port)}); err != nil {
			return fmt.Errorf("bind udp port %d: %w", cfg.Port, err)
		}
		// Close wakes the loop with shutdown(2); the timeout is only a safety net.
		tv := unix.NsecToTimeval(int64(500 * time.Millisecond))
		if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
			return fmt.Errorf("set SO_RCVTIMEO: %w", err)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("speed-limit server: %w", err)
	}
	// The receive buffer stays the kernel's default, as the thesis's server had it: it is
	// what overflows first when the user-space server falls behind.
	s.rcvb, _ = unix.GetsockoptInt(s.fd, unix.SOL_SOCKET, unix.SO_RCVBUF)
	if cfg.Mode != Userspace {
		s.resp, err = NewResponder(ResponderConfig{
			Port: cfg.Port, Compute: cfg.Mode == EBPF, NS: cfg.NS, Iface: cfg.Iface,
			PeerNS: cfg.PeerNS, PeerIface: cfg.PeerIface, XDP: cfg.XDP,
		})
		if err != nil {
			return nil, fmt.Errorf("speed-limit server: %w", err)
		}
	}
	s.wg.Add(1)
	go s.serve()
	if cfg.Mode == Mixed {
		s.wg.Add(1)
		go s.recompute()
	}
	return s, nil
}

// serve is the user-space loop. It runs on a thread of its own with blocking syscalls, as a
// C server's main loop would.
func (s *Server) serve() {
	defer s.wg.Done()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	defer s.cfg.Pinning.Thread(cpupin.Server)()
	buf := make([]byte, 2048)
	out := make([]byte, wire.Size)
	for !s.stop.Load() {
		n, from, err := unix.Recvfrom(s.fd, buf, 0)
		if err != nil {
			if errors.Is(err, unix.EINTR) || errors.Is(err, unix.EAGAIN) {
				continue
			}
			if !s.stop.Load() {
				s.setErr(fmt.Errorf("receive: %w", err))
			}
			return
		}
		if s.stop.Load() {
			return
		}
		msg, err := wire.Decode(buf[:n])
		if err != nil || s.cfg.Mode != Userspace || from == nil {
			// Malformed, or anything the XDP program passed up: never answered.
			s.ignored.Add(1)
			continue
		}
		switch msg.Op {
		case wire.GetSpeedLimit:
			cars := s.cars.Add(1)
			wire.Message{Op: wire.Reply, Value: wire.LimitKmh(cars)}.Put(out)
			if err := unix.Sendto(s.fd, out, 0, from); err != nil {
				// A full queue or a vanished client costs this reply, not the server.
				s.ignored.Add(1)
				continue
			}
			s.answered.Add(1)
		case wire.OutOfRange:
			// Only this goroutine writes cars: load and store do not race.
			if c := s.cars.Load(); c > 0 {
				s.cars.Store(c - 1)
			}
			s.left.Add(1)
		default:
			s.ignored.Add(1)
		}
	}
}

// recompute is the mixed configuration's timer: read the kernel's count, compute the limit
// with the float formula, write it. The program writes only the count and user space only
// the limit, so neither overwrites the other's value.
func (s *Server) recompute() {
	defer s.wg.Done()
	t := time.NewTicker(s.cfg.Period)
	defer t.Stop()
	for {
		select {
		case <-s.tick:
			return
		case <-t.C:
		}
		cars, err := s.resp.Cars()
		if err == nil {
			err = s.resp.SetLimit(wire.LimitKmh(cars))
		}
		if err != nil {
			s.setErr(err)
			return
		}
		s.updates.Add(1)
	}
}

func (s *Server) setErr(err error) {
	s.errMu.Lock()
	if s.err == nil {
		s.err = err
	}
	s.errMu.Unlock()
}

// Err returns the first error the server's loops met, or nil while they run fine.
func (s *Server) Err() error {
	s.errMu.Lock()
	defer s.errMu.Unlock()
	return s.err
}

// Mode returns the configuration.
func (s *Server) Mode() Mode { return s.cfg.Mode }

// Port returns the UDP port.
func (s *Server) Port() uint16 { return s.cfg.Port }

// XDPMode returns how the XDP program is attached: native, generic, or none for the
// user-space configuration.
func (s *Server) XDPMode() XDPMode {
	if s.resp == nil {
		return XDPNone
	}
	return s.resp.Mode()
}

// Cars returns the number of cars the server counts.
func (s *Server) Cars() (uint64, error) {
	if s.resp == nil {
		return s.cars.Load(), nil
	}
	return s.resp.Cars()
}

// RunStats returns the XDP program's run count and total run time (see Responder.RunStats);
// ok is false in the user-space configuration.
func (s *Server) RunStats() (runs uint64, total time.Duration, ok bool, err error) {
	if s.resp == nil {
		return 0, 0, false, nil
	}
	runs, total, err = s.resp.RunStats()
	return runs, total, true, err
}

// Stats describes what the server did: the user-space loop's counters and, in the XDP
// configurations, the program's (see Responder.Stats).
func (s *Server) Stats() (map[string]uint64, error) {
	out := map[string]uint64{
		"user_answered": s.answered.Load(), "user_left": s.left.Load(), "user_ignored": s.ignored.Load(),
	}
	if s.cfg.Mode == Mixed {
		out["limit_updates"] = s.updates.Load()
	}
	if s.resp == nil {
		return out, nil
	}
	st, err := s.resp.Stats()
	for k, v := range st {
		out["xdp_"+k] = v
	}
	return out, err
}

// Settings describes the configuration for meta.json.
func (s *Server) Settings() map[string]string {
	m := map[string]string{
		"configuration": string(s.cfg.Mode),
		"port":          strconv.Itoa(int(s.cfg.Port)),
		"xdp_mode":      string(s.XDPMode()),
		"socket_rcvbuf": strconv.Itoa(s.rcvb),
	}
	switch s.cfg.Mode {
	case Userspace:
		m["answers"] = "user space, one thread, recvfrom/sendto"
		m["limit"] = "float formula per request, rounded"
	case Mixed:
		m["answers"] = "xdp (XDP_TX)"
		m["limit"] = "float formula in user space every " + s.cfg.Period.String() + ", rounded, via a map"
	case EBPF:
		m["answers"] = "xdp (XDP_TX)"
		m["limit"] = "fixed-point formula in the program per request, rounded"
	}
	return m
}

// Close stops the server, detaches and unloads its program and closes its socket. It is
// idempotent.
func (s *Server) Close() error {
	s.closeMu.Lock()
	defer s.closeMu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	s.stop.Store(true)
	close(s.tick)
	if s.fd >= 0 {
		// shutdown wakes a recvfrom blocked on the socket at once.
		_ = unix.Shutdown(s.fd, unix.SHUT_RDWR)
	}
	s.wg.Wait()
	var errs []error
	if s.resp != nil {
		errs = append(errs, s.resp.Close())
	}
	if s.fd >= 0 {
		if err := unix.Close(s.fd); err != nil {
			errs = append(errs, fmt.Errorf("close the server socket: %w", err))
		}
		s.fd = -1
	}
	return errors.Join(errs...)
}
