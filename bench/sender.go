package bench

// This file holds the bottleneck sweep's sender: several OS threads, each with a connected
// blocking socket of its own, share one paced schedule and send with sendmmsg, every message
// a UDP GSO buffer of up to udpGSOMaxSegs datagrams where the kernel takes UDP_SEGMENT. The
// receive side is udpstream.go's, unchanged; the payload format (sequence number and send
// time) is the same, so the receiver cannot tell this sender from udpSender.
//
// Sequence numbers are claimed from one counter: a thread that wakes takes what came due
// (up to one call's worth) with a compare-and-swap, so the threads together follow the
// schedule of one stream and each datagram is sent once. Every datagram of one call carries
// the time read just before the call.
//
// Note: GSO keeps a buffer of datagrams one socket buffer (skb) until something segments it.
// Through veths and the bridge nothing does before the receiving socket, so TC programs and
// nftables see one packet per buffer; a TUN device (the user-space proxy) segments it on its
// way in. The sweep records the datagrams per buffer it used (gso_segments) with every rate.

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/edgebpf/edgebpf/internal/cpupin"
)

const (
	// udpGSOMaxSegs is the most datagrams one GSO buffer carries: the kernel's
	// UDP_MAX_SEGMENTS is 64 before Linux 6.9 and 128 since; the lower one works on both.
	udpGSOMaxSegs = 64
	// udpGSOMsgs is the most GSO buffers one sendmmsg carries.
	udpGSOMsgs = 8
	// maxSenderThreads bounds UDPSweepConfig.Threads.
	maxSenderThreads = 256
)

// sweepSenderConfig says how the sweep sends one stream.
type sweepSenderConfig struct {
	threads int
	gso     bool
	pids    []int    // processes whose CPU time counts (pathProcesses); nil: this one
	idle    idleCost // subtracted from the stream's CPU time
}

// sweepSendInfo is what a sweep sender did besides the counts in udpStreamResult.
type sweepSendInfo struct {
	threads     int
	gsoSegments int   // datagrams per GSO buffer used; 1 without GSO
	gsoRefused  error // why the kernel refused GSO, if it did
}

// sweepSender sends one stream from several threads.
type sweepSender struct {
	cfg     udpStreamConfig
	socks   []*txSocket
	segs    int         // datagrams per GSO buffer asked for; 1 without GSO
	gsoOff  atomic.Bool // the kernel refused a GSO send: every thread falls back
	refusal atomic.Pointer[error]

	claimed    atomic.Uint64 // sequence numbers below it are taken by a thread
	sent       atomic.Uint64
	sendErrors atomic.Uint64
}

// txSocket is one thread's socket and its send buffers.
type txSocket struct {
	fd   int
	gso  bool // UDP_SEGMENT is set on fd
	buf  []byte
	iovs []unix.Iovec
	hdrs []mmsghdr
}

// gsoSegments returns the datagrams of size bytes one GSO buffer may carry: at most
// udpGSOMaxSegs, and no more than fit in the largest UDP payload.
func gsoSegments(size int) int {
	return max(1, min(udpGSOMaxSegs, maxUDPSize/size))
}

// dialSweepSender opens cfg.threads sockets inside ns connected to target:c.port and asks
// each for UDP GSO if cfg.gso is set. A kernel that refuses UDP_SEGMENT leaves the sender
// without GSO, which info reports; any other failure closes what was opened.
func dialSweepSender(ns NS, target netip.Addr, c udpStreamConfig, cfg sweepSenderConfig) (*sweepSender, error) {
	s := &sweepSender{cfg: c, segs: 1}
	if cfg.gso {
		s.segs = gsoSegments(c.size)
	}
	_, sa := sockaddr(target, c.port)
	for range cfg.threads {
		var fd int
		err := ns.Do(func() error {
			var err error
			fd, err = unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, unix.IPPROTO_UDP)
			if err != nil {
				return err
			}
			if err := unix.Connect(fd, sa); err != nil {
				unix.Close(fd)
				return err
			}
			return nil
		})
		if err != nil {
			s.close()
			return nil, fmt.Errorf("open udp socket to %s port %d in the client namespace: %w", target, c.port, err)
		}
		sock := &txSocket{fd: fd}
		s.socks = append(s.socks, sock)
		if err := sock.setup(c.size, s.segs); err != nil {
			s.close()
			return nil, fmt.Errorf("set up the udp socket to %s port %d: %w", target, c.port, err)
		}
		if s.segs > 1 && !sock.gso {
			s.refuse(fmt.Errorf("setsockopt UDP_SEGMENT: %w", sock.gsoErr(c.size)))
		}
	}
	return s, nil
}

// setup sizes the socket's send buffer, bounds its blocking sends and, for segs > 1, asks
// for GSO segments of size bytes; t.gso says whether the kernel took it.
func (t *txSocket) setup(size, segs int) error {
	if unix.SetsockoptInt(t.fd, unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, udpSocketBuf) != nil {
		if err := unix.SetsockoptInt(t.fd, unix.SOL_SOCKET, unix.SO_SNDBUF, udpSocketBuf); err != nil {
			return fmt.Errorf("set SO_SNDBUF: %w", err)
		}
	}
	if err := setTimeout(t.fd, unix.SO_SNDTIMEO, udpReadPoll); err != nil {
		return err
	}
	if segs > 1 {
		t.gso = t.gsoErr(size) == nil
	}
	n := udpBatch
	if t.gso {
		n = udpGSOMsgs
	} else {
		segs = 1
	}
	t.buf = make([]byte, n*segs*size)
	t.iovs = make([]unix.Iovec, n)
	t.hdrs = make([]mmsghdr, n)
	for i := range t.hdrs {
		t.iovs[i].Base = &t.buf[i*segs*size]
		t.hdrs[i].hdr.Iov = &t.iovs[i]
		t.hdrs[i].hdr.SetIovlen(1)
	}
	return nil
}

// gsoErr sets UDP_SEGMENT to size and returns the kernel's answer.
func (t *txSocket) gsoErr(size int) error {
	return unix.SetsockoptInt(t.fd, unix.SOL_UDP, unix.UDP_SEGMENT, size)
}

// dropGSO turns GSO off on the socket and resizes its messages to one datagram each.
func (t *txSocket) dropGSO(size int) error {
	if !t.gso {
		return nil
	}
	if err := unix.SetsockoptInt(t.fd, unix.SOL_UDP, unix.UDP_SEGMENT, 0); err != nil {
		return fmt.Errorf("clear UDP_SEGMENT: %w", err)
	}
	t.gso = false
	return t.setup(size, 1)
}

// refuse records the first reason GSO was refused and turns it off for every thread.
func (s *sweepSender) refuse(err error) {
	s.refusal.CompareAndSwap(nil, &err)
	s.gsoOff.Store(true)
}

// info says how the stream was sent.
func (s *sweepSender) info() sweepSendInfo {
	in := sweepSendInfo{threads: len(s.socks), gsoSegments: s.segs}
	if p := s.refusal.Load(); p != nil {
		in.gsoSegments, in.gsoRefused = 1, *p
	}
	return in
}

func (s *sweepSender) close() {
	for _, t := range s.socks {
		unix.Close(t.fd)
	}
}

// run sends the stream from one thread per socket until the schedule is done, udpEndSlack
// after its end, or stop closes; res.sent, res.sendErrors and res.sendEnd are set when it
// returns. It returns the first error that is not transient.
func (s *sweepSender) run(ctx context.Context, stop <-chan struct{}, res *udpStreamResult, stamped *atomic.Uint64) error {
	errs := make([]error, len(s.socks))
	var wg sync.WaitGroup
	for i, t := range s.socks {
		wg.Go(func() {
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			defer cpupin.Thread(ctx, cpupin.Client)()
			errs[i] = s.thread(t, stop, res.start, stamped)
		})
	}
	wg.Wait()
	res.sendEnd = udpNow()
	res.sent, res.sendErrors = s.sent.Load(), s.sendErrors.Load()
	err := errors.Join(errs...)
	if res.sent == 0 && err == nil && res.sendErrors > 0 {
		err = fmt.Errorf("every send failed (%d sends)", res.sendErrors)
	}
	return err
}

// thread is one sending thread's loop: it paces against the shared schedule (packet i is
// due at start + i/pps), claims what came due and sends it in one sendmmsg.
func (s *sweepSender) thread(t *txSocket, stop <-chan struct{}, start int64, stamped *atomic.Uint64) error {
	total := s.cfg.packets()
	nsPerPacket := 1e9 / s.cfg.pps()
	end := start + s.cfg.duration.Nanoseconds()
	for {
		select {
		case <-stop:
			return nil
		default:
		}
		now := udpNow()
		if now >= end+udpEndSlack.Nanoseconds() {
			return nil
		}
		if s.gsoOff.Load() {
			if err := t.dropGSO(s.cfg.size); err != nil {
				return err
			}
		}
		due := min(uint64(float64(min(now, end)-start)/nsPerPacket)+1, total)
		c := s.claimed.Load()
		if c >= total || (c >= due && now >= end) {
			return nil
		}
		if c >= due {
			wake := start + int64(math.Ceil(float64(c)*nsPerPacket))
			// Each thread sleeps at least udpMinSleep per thread, so that together they
			// wake no more often than one sender would: a wake-up costs more than a packet.
			sleepUntil(max(wake, now+int64(len(s.socks))*udpMinSleep.Nanoseconds()), now, end)
			continue
		}
		n := min(due-c, t.capacity(s.segs))
		if !s.claimed.CompareAndSwap(c, c+n) {
			continue
		}
		raiseTo(stamped, c+n)
		if err := s.send(t, c, n); err != nil {
			return err
		}
	}
}

// sleepUntil sleeps until wake (CLOCK_MONOTONIC ns), at most until end or udpMaxSleep. The
// thread is locked to its goroutine, so it sleeps in clock_nanosleep whatever the length:
// time.Sleep would wake the goroutine through the scheduler, which then has to hand it back
// to its own thread, later still on a busy machine.
func sleepUntil(wake, now, end int64) {
	udpSleepUntil(min(wake, end, now+udpMaxSleep.Nanoseconds()))
}

// raiseTo raises a to v unless it is higher already.
func raiseTo(a *atomic.Uint64, v uint64) {
	for {
		old := a.Load()
		if old >= v || a.CompareAndSwap(old, v) {
			return
		}
	}
}

// capacity is the most datagrams one call on t carries.
func (t *txSocket) capacity(segs int) uint64 {
	if t.gso {
		return uint64(len(t.hdrs) * segs)
	}
	return uint64(len(t.hdrs))
}

// send sends the n datagrams from sequence number first in one sendmmsg and counts them.
// Transient errors (a refused or interrupted send, a full queue, a send timeout) count in
// sendErrors and lose the call's datagrams; a refused GSO send turns GSO off for every thread.
func (s *sweepSender) send(t *txSocket, first, n uint64) error {
	size := s.cfg.size
	segs := 1
	if t.gso {
		segs = s.segs
	}
	sendTime := udpNow()
	msgs := 0
	for off := uint64(0); off < n; off += uint64(segs) {
		k := min(uint64(segs), n-off)
		for j := range k {
			b := t.buf[(off+j)*uint64(size):]
			encodeUDPHeader(b, first+off+j, sendTime)
		}
		t.iovs[msgs].SetLen(int(k) * size)
		msgs++
	}
	r, _, errno := unix.Syscall6(unix.SYS_SENDMMSG, uintptr(t.fd), uintptr(unsafe.Pointer(&t.hdrs[0])), uintptr(msgs), 0, 0, 0)
	if errno != 0 {
		switch {
		case t.gso && (errno == unix.EIO || errno == unix.EINVAL):
			s.refuse(fmt.Errorf("sendmmsg with UDP_SEGMENT %d: %w", size, errno))
			return nil
		case errno == unix.ECONNREFUSED || errno == unix.ENOBUFS || errno == unix.EAGAIN || errno == unix.EINTR:
			s.sendErrors.Add(1)
			return nil
		}
		return fmt.Errorf("sendmmsg: %w", errno)
	}
	var dgrams uint64
	for i := range int(r) {
		dgrams += uint64(t.hdrs[i].len) / uint64(size)
	}
	s.sent.Add(dgrams)
	return nil
}

// sweepStream is what one rate of the sweep measured beyond udpStreamResult.
type sweepStream struct {
	send        sweepSendInfo
	pathNs      float64 // CPU ns of this process, its children and ksoftirqd net of idle (see pathcost.go)
	machineNs   float64 // busy CPU ns of the whole machine from /proc/stat net of idle
	rcvbufDrops uint64  // datagrams the server namespace's UDP sockets dropped for a full buffer
	costErr     error   // why pathNs, machineNs or rcvbufDrops could not be read
}

// runSweepStream is runUDPStream with the sweep's sender: it receives as udpReceiver does
// and sends from sc.threads threads, and measures the CPU time and the receiving sockets'
// drops over the stream, from its start until the receiver has drained.
func runSweepStream(ctx context.Context, ep Endpoints, cfg udpStreamConfig, sc sweepSenderConfig) (*udpStreamResult, *sweepStream, error) {
	if sc.pids == nil {
		sc.pids = []int{os.Getpid()}
	}
	rx, err := listenUDPStream(ep.Server, cfg)
	if err != nil {
		return nil, nil, err
	}
	defer rx.close()
	tx, err := dialSweepSender(ep.Client, ep.Target.Unmap(), cfg, sc)
	if err != nil {
		return nil, nil, err
	}
	defer tx.close()

	stopCtx, stop := context.WithCancel(ctx)
	defer stop()
	var stamped atomic.Uint64
	var drainUntil atomic.Int64
	res := &udpStreamResult{size: cfg.size, duration: cfg.duration, rcvBuf: rx.rcvBuf}
	st := &sweepStream{}
	var drops0, drops1 uint64
	errA := ep.Server.Do(func() (err error) { drops0, err = udpRcvbufErrors(); return err })
	cpu0, errB := readPathCPU(sc.pids)

	res.start = udpNow()
	rx.res, rx.stamped, rx.drainUntil = res, &stamped, &drainUntil
	rxDone := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // the receiver blocks in recvmmsg on its own thread
		defer runtime.UnlockOSThread()
		defer cpupin.Thread(ctx, cpupin.Server)()
		err := rx.run(stopCtx.Done())
		if err != nil {
			stop()
		}
		rxDone <- err
	}()
	txErr := tx.run(ctx, stopCtx.Done(), res, &stamped)
	if txErr != nil || stopCtx.Err() != nil {
		drainUntil.Store(udpNow())
	} else {
		drainUntil.Store(udpNow() + cfg.grace.Nanoseconds())
	}
	rxErr := <-rxDone

	cpu1, errC := readPathCPU(sc.pids)
	errD := ep.Server.Do(func() (err error) { drops1, err = udpRcvbufErrors(); return err })
	st.send = tx.info()
	wall := float64(cpu1.at - cpu0.at)
	st.pathNs = float64(pathNs(cpu0, cpu1)) - sc.idle.path*wall
	st.machineNs = machineNs(cpu0, cpu1, clockTicks()) - sc.idle.machine*wall
	st.rcvbufDrops = drops1 - min(drops0, drops1)
	st.costErr = errors.Join(errA, errB, errC, errD)

	switch {
	case ctx.Err() != nil:
		return res, st, ctx.Err()
	case rxErr != nil:
		return res, st, fmt.Errorf("receive on port %d: %w", cfg.port, rxErr)
	case txErr != nil:
		return res, st, fmt.Errorf("send to %s port %d: %w", ep.Target, cfg.port, txErr)
	case res.sent == 0:
		return res, st, fmt.Errorf("send to %s port %d: no datagram was sent (%d sends failed)", ep.Target, cfg.port, res.sendErrors)
	}
	// Intervals that ended after the last arrival hold the final estimate.
	rx.markJitter(math.MaxInt64)
	res.complete = true
	return res, st, nil
}
