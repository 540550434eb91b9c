package bench

// This file holds the machinery shared by UDPJitter and UDPSweep: one paced UDP stream from a
// sender in ep.Client to a receiver in ep.Server, both in this process.
//
// Every datagram's payload starts with a 16-byte header, big-endian: the packet's sequence
// number (uint64, from 0) and its CLOCK_MONOTONIC send time in ns (int64). Sender and
// receiver run on one host and read one clock, so a packet's one-way delay is its receive
// time minus its send time, with no clock synchronisation. Both run on goroutines locked to
// their OS threads, on blocking sockets called directly (mmsg.go), so no netpoller wake-up
// or goroutine scheduling sits between a timestamp and the kernel. The send time is read
// once per sendmmsg batch and written into the batch immediately before the call. The
// receive time is taken either in user space once per recvmmsg batch right after the
// blocked call returns, so every packet of a batch shares it (application to application
// like iperf3, which reads the clock after each recv), or, with kernelRx, per datagram from
// the kernel's receive timestamp (SO_TIMESTAMPNS, CLOCK_REALTIME, brought to
// CLOCK_MONOTONIC with the clocks' offset read after every batch; where the kernel takes it
// depends on the path, see RxStampsKernel).
//
// Rates are UDP payload bit/s, as iperf3 -b counts them: IP and UDP headers (28 bytes per
// datagram) are not included.
//
// The sender paces against an absolute schedule and never spins. It sleeps in
// clock_nanosleep(TIMER_ABSTIME) on its locked thread, at least 100 µs: at high rates every
// wake-up sends the packets that came due meanwhile in one sendmmsg.
//
// Note: other designs were tried and rejected. time.Sleep alone: the Go runtime rounds
// sleeps below 1 ms up to about 1 ms, turning a paced stream into 1 ms bursts. Spinning
// (runtime.Gosched) while the next packet is under 100 µs away: the sender took a core and
// starved the receiver (mean OWD 1.6 ms at 200 Mbit/s instead of 50 µs, 1.5 % loss at
// 1 Gbit/s). A receiver on package net's netpoller (ReadBatch with read deadlines): a
// datagram's arrival first woke the netpoller, which then scheduled the goroutine, and the
// RFC 3550 jitter of a 1 Mbit/s stream read 4 - 7.5x iperf3's on the same path with 95 %
// intervals too wide to rank data planes (issue 11).

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"runtime"
	"strconv"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/edgebpf/edgebpf/internal/cpupin"
)

const (
	// udpHeaderLen is the size of the sequence number and send time that start a payload.
	udpHeaderLen = 16
	// defaultUDPSize is the default payload size: 1400 bytes + 28 bytes of IP and UDP
	// headers fit the project's MTU of 1450 without fragmentation.
	defaultUDPSize = 1400
	// maxUDPSize is the largest UDP payload over IPv4 (65535 - 20 - 8).
	maxUDPSize = 65507
	// maxUDPRate bounds a target rate: above 100 Gbit/s it is a unit mistake, not a test.
	maxUDPRate = 100e9
	// defaultUDPGrace is how long the receiver keeps reading after the sender's last packet.
	defaultUDPGrace = 200 * time.Millisecond

	// udpBatch is the most datagrams one sendmmsg or recvmmsg call carries.
	udpBatch = 64
	// udpSocketBuf is the send and receive buffer asked for (the kernel doubles it for its
	// bookkeeping). A plain SO_RCVBUF is capped at net.core.rmem_max (212992 by default),
	// so the sockets first try SO_RCVBUFFORCE/SO_SNDBUFFORCE, which CAP_NET_ADMIN may use
	// to pass the cap, and fall back to the capped options without it.
	udpSocketBuf = 4 << 20
	// udpMinSleep is the shortest sleep of the sender: when its next packet is due sooner,
	// it sleeps this long anyway and then sends what came due in one sendmmsg.
	udpMinSleep = 100 * time.Microsecond
	// udpEndSlack is how long after the end of its duration the sender may still send
	// packets that were due before the end: a last sleep may overshoot the end, and a
	// sender that fell behind stops soon after it rather than sending its backlog.
	udpEndSlack = 2 * time.Millisecond
	// udpMaxSleep bounds one sleep of the sender, so that it notices a stop.
	udpMaxSleep = 50 * time.Millisecond
	// udpReadPoll bounds one blocking read of the receiver, so that it notices a stop.
	udpReadPoll = 100 * time.Millisecond
)

// udpNow returns CLOCK_MONOTONIC in ns.
func udpNow() int64 { return int64(monotonic()) }

// encodeUDPHeader writes seq and the send time sent (CLOCK_MONOTONIC ns) to the first
// udpHeaderLen bytes of b.
func encodeUDPHeader(b []byte, seq uint64, sent int64) {
	binary.BigEndian.PutUint64(b[0:8], seq)
	binary.BigEndian.PutUint64(b[8:16], uint64(sent))
}

// decodeUDPHeader reads what encodeUDPHeader wrote. ok is false if b is too short.
func decodeUDPHeader(b []byte) (seq uint64, sent int64, ok bool) {
	if len(b) < udpHeaderLen {
		return 0, 0, false
	}
	return binary.BigEndian.Uint64(b[0:8]), int64(binary.BigEndian.Uint64(b[8:16])), true
}

// jitterStep returns the RFC 3550 (section 6.4.1, A.8) interarrival jitter after one more
// packet, computed as iperf3 does: with transit = arrival - send time of this packet and
// prevTransit that of the packet received before it (in arrival order),
// d = |transit - prevTransit| and jitter += (d - jitter) / 16. All values in seconds. For
// the first packet of a stream iperf3 passes prevTransit = transit, so the jitter stays 0.
func jitterStep(jitter, prevTransit, transit float64) float64 {
	d := math.Abs(transit - prevTransit)
	return jitter + (d-jitter)/16
}

// udpStreamConfig describes one paced stream. Callers validate and default it.
type udpStreamConfig struct {
	port     uint16
	rate     float64 // payload bit/s
	size     int     // payload bytes
	duration time.Duration
	grace    time.Duration
	// owdEvery keeps the one-way delay of the packets whose sequence number is a multiple
	// of it; 1 keeps all, 0 none.
	owdEvery uint64
	// kernelRx takes each datagram's receive time from the kernel's receive timestamp
	// (SO_TIMESTAMPNS) instead of after recvmmsg returns in user space.
	kernelRx bool
	// jitterEvery records the running jitter at the end of every whole jitterEvery of the
	// stream (udpStreamResult.jitters); 0 records none.
	jitterEvery time.Duration
}

// jitterMarks returns how many whole jitterEvery intervals the stream's duration holds.
func (c udpStreamConfig) jitterMarks() int {
	if c.jitterEvery <= 0 {
		return 0
	}
	return int(c.duration / c.jitterEvery)
}

// udpJitterMark is the running jitter at the end of one interval.
type udpJitterMark struct {
	at    int64 // the interval's end, CLOCK_MONOTONIC ns
	value float64
}

// packets returns how many packets the stream is scheduled to send: packet i is due at
// i/pps seconds after the start, for every i/pps < duration.
func (c udpStreamConfig) packets() uint64 {
	return uint64(math.Ceil(c.duration.Seconds() * c.pps()))
}

// pps returns the packet rate that carries c.rate.
func (c udpStreamConfig) pps() float64 {
	return c.rate / float64(8*c.size)
}

// udpOWD is the one-way delay of one received packet.
type udpOWD struct {
	seq  uint64
	sent int64 // CLOCK_MONOTONIC ns
	owd  int64 // ns
}

// udpStreamResult is what one stream measured. Times are CLOCK_MONOTONIC ns.
type udpStreamResult struct {
	size        int
	duration    time.Duration // scheduled
	start       int64         // the first packet's due time
	sendEnd     int64         // the sender's last sendmmsg returned
	lastArrival int64         // last new packet received; 0 if none
	sent        uint64        // datagrams the kernel accepted
	sendErrors  uint64        // sendmmsg calls that failed with a transient error
	received    uint64        // distinct sequence numbers received
	duplicates  uint64
	reordered   uint64 // received after a higher sequence number
	stray       uint64 // datagrams that are not part of this stream
	userStamped uint64 // datagrams timed in user space although kernel timestamps were asked for
	jitter      float64
	jitters     []udpJitterMark // the jitter at each interval's end, see jitterEvery
	owd         []udpOWD
	rcvBuf      int // the receive buffer the kernel granted, bytes
	// complete is false if the stream was interrupted: its loss, rates and jitter cover
	// only part of the schedule and no grace period.
	complete bool
}

// sendRate returns the achieved send rate in payload bit/s: the bits the kernel accepted
// over the scheduled duration, or over the time the sender took if that was longer (or
// the stream was interrupted).
func (r *udpStreamResult) sendRate() float64 {
	elapsed := time.Duration(r.sendEnd - r.start)
	if r.complete && elapsed < r.duration {
		elapsed = r.duration
	}
	if elapsed <= 0 {
		return 0
	}
	return float64(r.sent) * float64(8*r.size) / elapsed.Seconds()
}

// throughput returns the received payload bit/s: the distinct packets received over the
// time from the stream's start to the last of them arriving.
func (r *udpStreamResult) throughput() float64 {
	if r.received == 0 || r.lastArrival <= r.start {
		return 0
	}
	return float64(r.received) * float64(8*r.size) / (float64(r.lastArrival-r.start) / 1e9)
}

// lossPercent returns the percentage of sent packets that were not received.
func (r *udpStreamResult) lossPercent() float64 {
	if r.sent == 0 {
		return 0
	}
	lost := float64(r.sent) - float64(r.received)
	return 100 * max(lost, 0) / float64(r.sent)
}

// runUDPStream sends one paced stream from ep.Client to ep.Target:cfg.port and receives it
// in ep.Server. It creates both sockets inside their namespaces, runs the receiver and the
// sender on goroutines of their own, lets the receiver drain for cfg.grace after the last
// send and closes both sockets before it returns. When ctx ends it returns within about
// udpReadPoll with the result so far (complete false) and ctx.Err().
func runUDPStream(ctx context.Context, ep Endpoints, cfg udpStreamConfig) (*udpStreamResult, error) {
	rx, err := listenUDPStream(ep.Server, cfg)
	if err != nil {
		return nil, err
	}
	defer rx.close()
	tx, err := dialUDPStream(ep.Client, ep.Target.Unmap(), cfg)
	if err != nil {
		return nil, err
	}
	defer tx.close()

	// stop ends both loops early: on ctx's end or the receiver's failure.
	stopCtx, stop := context.WithCancel(ctx)
	defer stop()
	var stamped atomic.Uint64 // sequence numbers below it may have been sent
	var drainUntil atomic.Int64

	res := &udpStreamResult{size: cfg.size, duration: cfg.duration, rcvBuf: rx.rcvBuf}
	res.start = udpNow()
	rx.res, rx.stamped, rx.drainUntil = res, &stamped, &drainUntil
	rxDone := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		defer cpupin.Thread(ctx, cpupin.Server)()
		err := rx.run(stopCtx.Done())
		if err != nil {
			stop()
		}
		rxDone <- err
	}()
	txDone := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		defer cpupin.Thread(ctx, cpupin.Client)()
		txDone <- tx.run(stopCtx.Done(), res, &stamped)
	}()

	txErr := <-txDone
	if txErr != nil || stopCtx.Err() != nil {
		drainUntil.Store(udpNow())
	} else {
		drainUntil.Store(udpNow() + cfg.grace.Nanoseconds())
	}
	rxErr := <-rxDone

	switch {
	case ctx.Err() != nil:
		return res, ctx.Err()
	case rxErr != nil:
		return res, fmt.Errorf("receive on port %d: %w", cfg.port, rxErr)
	case txErr != nil:
		return res, fmt.Errorf("send to %s port %d: %w", ep.Target, cfg.port, txErr)
	case res.sent == 0:
		return res, fmt.Errorf("send to %s port %d: no datagram was sent (%d sends failed)", ep.Target, cfg.port, res.sendErrors)
	}
	// Intervals that ended after the last arrival hold the final estimate.
	rx.markJitter(math.MaxInt64)
	res.complete = true
	return res, nil
}

// udpReceiver reads one stream on a blocking socket. Its fields after fd are owned by run
// until it returns.
type udpReceiver struct {
	fd         int
	batch      *mmsgBatch
	size       int
	rcvBuf     int
	owdEvery   uint64
	kernelRx   bool
	expected   uint64 // packets scheduled
	every      int64  // jitter interval, ns; 0 for none
	marks      int    // jitter intervals in the stream
	res        *udpStreamResult
	stamped    *atomic.Uint64
	drainUntil *atomic.Int64
}

// listenUDPStream creates the receiving socket, blocking, on 0.0.0.0:cfg.port inside ns.
func listenUDPStream(ns NS, cfg udpStreamConfig) (*udpReceiver, error) {
	rx := &udpReceiver{fd: -1, size: cfg.size, owdEvery: cfg.owdEvery, kernelRx: cfg.kernelRx, expected: cfg.packets(),
		every: cfg.jitterEvery.Nanoseconds(), marks: cfg.jitterMarks()}
	err := ns.Do(func() error {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, unix.IPPROTO_UDP)
		if err != nil {
			return err
		}
		rx.fd = fd
		return unix.Bind(fd, &unix.SockaddrInet4{Port: int(cfg.port)})
	})
	if err != nil {
		rx.close()
		return nil, fmt.Errorf("listen on udp port %d in the server namespace: %w", cfg.port, err)
	}
	if rx.rcvBuf, err = setBufferFD(rx.fd, unix.SO_RCVBUFFORCE, unix.SO_RCVBUF); err != nil {
		rx.close()
		return nil, fmt.Errorf("set the receive buffer of udp port %d: %w", cfg.port, err)
	}
	if err := setTimeout(rx.fd, unix.SO_RCVTIMEO, udpReadPoll); err != nil {
		rx.close()
		return nil, fmt.Errorf("udp port %d: %w", cfg.port, err)
	}
	oob := 0
	if cfg.kernelRx {
		if err := unix.SetsockoptInt(rx.fd, unix.SOL_SOCKET, unix.SO_TIMESTAMPNS, 1); err != nil {
			rx.close()
			return nil, fmt.Errorf("ask for kernel receive timestamps on udp port %d: %w", cfg.port, err)
		}
		oob = unix.CmsgSpace(timespecLen)
	}
	// One buffer byte more than a payload, so an oversized datagram shows as such.
	rx.batch = newMmsgBatch(udpBatch, cfg.size+1, oob)
	return rx, nil
}

// close closes the socket; call it only once run has returned.
func (rx *udpReceiver) close() {
	if rx.fd >= 0 {
		unix.Close(rx.fd)
		rx.fd = -1
	}
}

// udpRxState is what the receiver carries from one batch to the next.
type udpRxState struct {
	seen        []uint64 // bitset of received sequence numbers
	next        uint64   // one above the highest sequence number received
	first       bool
	prevTransit float64
	timeout     int64 // the SO_RCVTIMEO currently set, ns
}

// run reads datagrams until the drain deadline passes or stop is closed, and records
// them in rx.res. It returns nil at the drain deadline. It must run on a goroutine locked
// to its OS thread: the thread blocks in recvmmsg and wakes when a datagram arrives, and
// the arrival time is read right after the call returns.
func (rx *udpReceiver) run(stop <-chan struct{}) error {
	st := udpRxState{first: true, timeout: udpReadPoll.Nanoseconds()}
	if rx.owdEvery > 0 {
		rx.res.owd = make([]udpOWD, 0, min(rx.expected/rx.owdEvery+1, 1<<16))
	}
	for {
		select {
		case <-stop:
			return nil
		default:
		}
		if done, err := rx.armTimeout(&st); done || err != nil {
			return err
		}
		n, err := rx.batch.recv(rx.fd)
		arrival := udpNow()
		if err != nil {
			if temporary(err) {
				continue
			}
			return fmt.Errorf("recvmmsg: %w", err)
		}
		// CLOCK_REALTIME minus CLOCK_MONOTONIC, taken afresh every batch so that a slewing
		// wall clock cannot bias the kernel's timestamps.
		var realtimeAhead int64
		if rx.kernelRx {
			realtimeAhead = realtimeOffset()
		}
		rx.record(n, arrival, realtimeAhead, &st)
	}
}

// armTimeout shortens the socket's receive timeout to the drain deadline once that is
// nearer than the poll interval. done is true once the drain deadline has passed.
func (rx *udpReceiver) armTimeout(st *udpRxState) (done bool, err error) {
	until := rx.drainUntil.Load()
	if until == 0 {
		return false, nil
	}
	left := until - udpNow()
	if left <= 0 {
		return true, nil
	}
	if left < st.timeout {
		// SO_RCVTIMEO has microsecond resolution and 0 means no timeout.
		left = max(left, int64(time.Microsecond))
		if err := setTimeout(rx.fd, unix.SO_RCVTIMEO, time.Duration(left)); err != nil {
			return false, err
		}
		st.timeout = left
	}
	return false, nil
}

// record accounts the first n datagrams of the batch, which arrived at batchArrival
// (CLOCK_MONOTONIC ns); realtimeAhead converts the kernel's timestamps, where they are
// asked for.
func (rx *udpReceiver) record(n int, batchArrival, realtimeAhead int64, st *udpRxState) {
	res, b := rx.res, rx.batch
	limit := rx.stamped.Load()
	for i := range n {
		arrival := batchArrival
		if rx.kernelRx {
			if t, ok := kernelTimestamp(b.control(i)); ok && t-realtimeAhead <= batchArrival {
				arrival = t - realtimeAhead
			} else {
				res.userStamped++
			}
		}
		size := b.n(i)
		seq, sent, ok := decodeUDPHeader(b.bufs[i][:min(size, len(b.bufs[i]))])
		// Anything not sent by this stream's sender is stray: a wrong size, a sequence
		// number not yet sent, or a send time before this stream began (a late
		// datagram of an earlier stream on the same port).
		if !ok || size != rx.size || b.flags(i)&unix.MSG_TRUNC != 0 || seq >= limit || sent < res.start || sent > arrival {
			res.stray++
			continue
		}
		rx.account(seq, sent, arrival, st)
	}
}

// account records one datagram of the stream: jitter over every datagram in arrival order,
// duplicates and reordered ones included, as iperf3 computes it; then its sequence number.
func (rx *udpReceiver) account(seq uint64, sent, arrival int64, st *udpRxState) {
	res := rx.res
	rx.markJitter(arrival)
	transit := float64(arrival-sent) / 1e9
	if st.first {
		st.prevTransit, st.first = transit, false
	}
	res.jitter = jitterStep(res.jitter, st.prevTransit, transit)
	st.prevTransit = transit

	word, bit := seq/64, uint64(1)<<(seq%64)
	if word >= uint64(len(st.seen)) {
		st.seen = append(st.seen, make([]uint64, max(word+1, uint64(2*len(st.seen)))-uint64(len(st.seen)))...)
	}
	if st.seen[word]&bit != 0 {
		res.duplicates++
		return
	}
	st.seen[word] |= bit
	res.received++
	res.lastArrival = arrival
	if seq < st.next {
		res.reordered++
	} else {
		st.next = seq + 1
	}
	if rx.owdEvery > 0 && seq%rx.owdEvery == 0 {
		res.owd = append(res.owd, udpOWD{seq: seq, sent: sent, owd: arrival - sent})
	}
}

// markJitter records the running jitter at the end of every jitter interval that ended
// before t (CLOCK_MONOTONIC ns): the estimate over the datagrams that arrived before it.
func (rx *udpReceiver) markJitter(t int64) {
	res := rx.res
	for len(res.jitters) < rx.marks {
		at := res.start + int64(len(res.jitters)+1)*rx.every
		if at > t {
			return
		}
		res.jitters = append(res.jitters, udpJitterMark{at: at, value: res.jitter})
	}
}

// realtimeOffset returns CLOCK_REALTIME minus CLOCK_MONOTONIC in ns: the wall clock read
// between two monotonic reads, against their midpoint, keeping the tightest of three tries,
// so that a thread preempted between two reads does not skew it.
func realtimeOffset() int64 {
	var best, width int64 = 0, math.MaxInt64
	for range 3 {
		m1 := udpNow()
		r := time.Now().UnixNano()
		m2 := udpNow()
		if m2-m1 < width {
			best, width = r-(m1+(m2-m1)/2), m2-m1
		}
		if width < 1000 {
			break
		}
	}
	return best
}

// timespecLen is the size of the struct timespec of an SCM_TIMESTAMPNS message, and
// cmsgHdrLen that of a control message header, on the 64-bit platforms the project builds
// for (a header is a 64-bit length, then 32-bit level and type).
const (
	timespecLen = 16
	cmsgHdrLen  = 16
)

// kernelTimestamp returns the CLOCK_REALTIME ns of the SCM_TIMESTAMPNS control message in
// oob. It walks the headers in place: it runs per datagram and must not allocate.
func kernelTimestamp(oob []byte) (int64, bool) {
	for len(oob) >= cmsgHdrLen {
		n := binary.NativeEndian.Uint64(oob[0:8])
		level := int32(binary.NativeEndian.Uint32(oob[8:12]))
		typ := int32(binary.NativeEndian.Uint32(oob[12:16]))
		if n < cmsgHdrLen || n > uint64(len(oob)) {
			return 0, false
		}
		if level == unix.SOL_SOCKET && typ == unix.SCM_TIMESTAMPNS && n >= cmsgHdrLen+timespecLen {
			sec := int64(binary.NativeEndian.Uint64(oob[cmsgHdrLen : cmsgHdrLen+8]))
			nsec := int64(binary.NativeEndian.Uint64(oob[cmsgHdrLen+8 : cmsgHdrLen+16]))
			return sec*1e9 + nsec, true
		}
		oob = oob[min(uint64(unix.CmsgSpace(int(n)-cmsgHdrLen)), uint64(len(oob))):]
	}
	return 0, false
}

// udpSender sends one stream from a connected, blocking socket.
type udpSender struct {
	fd    int
	batch *mmsgBatch
	cfg   udpStreamConfig
}

// dialUDPStream creates the sending socket inside ns, connected to target:cfg.port.
func dialUDPStream(ns NS, target netip.Addr, cfg udpStreamConfig) (*udpSender, error) {
	tx := &udpSender{fd: -1, cfg: cfg}
	err := ns.Do(func() error {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, unix.IPPROTO_UDP)
		if err != nil {
			return err
		}
		tx.fd = fd
		// A connected socket skips the route lookup per datagram.
		_, sa := sockaddr(target, cfg.port)
		return unix.Connect(fd, sa)
	})
	if err != nil {
		tx.close()
		return nil, fmt.Errorf("open udp socket to %s port %d in the client namespace: %w", target, cfg.port, err)
	}
	if _, err := setBufferFD(tx.fd, unix.SO_SNDBUFFORCE, unix.SO_SNDBUF); err != nil {
		tx.close()
		return nil, fmt.Errorf("set the send buffer of the udp socket to %s port %d: %w", target, cfg.port, err)
	}
	// A blocked send gives up after this, so the sender notices a stop.
	if err := setTimeout(tx.fd, unix.SO_SNDTIMEO, udpReadPoll); err != nil {
		tx.close()
		return nil, fmt.Errorf("udp socket to %s port %d: %w", target, cfg.port, err)
	}
	tx.batch = newMmsgBatch(udpBatch, cfg.size, 0)
	return tx, nil
}

// close closes the socket; call it only once run has returned.
func (tx *udpSender) close() {
	if tx.fd >= 0 {
		unix.Close(tx.fd)
		tx.fd = -1
	}
}

// run paces the stream against an absolute schedule starting at res.start: packet i is
// due at start + i/pps. Whatever is due (up to udpBatch) goes out in one sendmmsg, so a
// sender that fell behind catches up in batches. It stops when the schedule is done or
// udpEndSlack after the end of the duration, so a sender too slow for the rate sends fewer
// packets rather than running longer. Before each send it raises stamped past the sequence
// numbers it is about to use, so the receiver can tell them from stray datagrams; the send
// time is read and written into the batch immediately before the sendmmsg call. It must
// run on a goroutine locked to its OS thread: it sleeps in clock_nanosleep.
func (tx *udpSender) run(stop <-chan struct{}, res *udpStreamResult, stamped *atomic.Uint64) error {
	total := tx.cfg.packets()
	nsPerPacket := 1e9 / tx.cfg.pps()
	start := res.start
	end := start + tx.cfg.duration.Nanoseconds()
	var lastErr error
	defer func() { res.sendEnd = udpNow() }()
	for res.sent < total {
		select {
		case <-stop:
			return nil
		default:
		}
		now := udpNow()
		if now >= end+udpEndSlack.Nanoseconds() {
			break
		}
		due := min(uint64(float64(min(now, end)-start)/nsPerPacket)+1, total)
		if due <= res.sent {
			if now >= end {
				break
			}
			wake := start + int64(math.Ceil(float64(res.sent)*nsPerPacket))
			// Never spin: on 2 cores a spinning sender takes the CPU the receiver and the
			// data plane under test need. At high rates each wake-up finds at least
			// udpMinSleep of packets due and sends them in one sendmmsg.
			wake = max(wake, now+udpMinSleep.Nanoseconds())
			udpSleepUntil(min(wake, end, now+udpMaxSleep.Nanoseconds()))
			continue
		}
		n := int(min(due-res.sent, udpBatch))
		stamped.Store(max(stamped.Load(), res.sent+uint64(n)))
		for i := range n {
			encodeUDPHeader(tx.batch.bufs[i], res.sent+uint64(i), 0)
		}
		sendTime := uint64(udpNow())
		for i := range n {
			binary.BigEndian.PutUint64(tx.batch.bufs[i][8:16], sendTime)
		}
		k, err := tx.batch.send(tx.fd, n, tx.cfg.size)
		res.sent += uint64(k)
		if err != nil {
			// A refused datagram (ICMP port unreachable from an earlier one), a full
			// queue or a send timeout costs the packets of this call, not the stream:
			// they count as lost if they are never sent.
			if errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ENOBUFS) || temporary(err) {
				res.sendErrors++
				lastErr = err
				continue
			}
			return fmt.Errorf("sendmmsg: %w", err)
		}
	}
	if res.sent == 0 && lastErr != nil {
		return lastErr
	}
	return nil
}

// udpSleepUntil sleeps until CLOCK_MONOTONIC reaches t (ns).
func udpSleepUntil(t int64) {
	ts := unix.NsecToTimespec(t)
	for {
		err := unix.ClockNanosleep(unix.CLOCK_MONOTONIC, unix.TIMER_ABSTIME, &ts, nil)
		if err != unix.EINTR {
			return
		}
	}
}

// udpSince returns the seconds from origin to t, both CLOCK_MONOTONIC ns.
func udpSince(origin, t int64) float64 {
	return float64(t-origin) / 1e9
}

// checkUDPEndpoints says what in ep a UDP meter cannot use: what checkEndpoints finds, and
// a target that is not IPv4 (the UDP meters receive on 0.0.0.0).
func checkUDPEndpoints(ep Endpoints) error {
	err := checkEndpoints(ep)
	if ep.Target.IsValid() && !ep.Target.Unmap().Is4() {
		err = errors.Join(err, fmt.Errorf("endpoints: target %s is not an IPv4 address: the udp meters receive on 0.0.0.0, give an IPv4 target", ep.Target))
	}
	return err
}

// udpFieldErrors validates the fields the UDP meters share; zero values are valid
// (defaults). meter prefixes every message.
func udpFieldErrors(meter string, size int, grace time.Duration) []error {
	var errs []error
	switch {
	case size < 0:
		errs = append(errs, fmt.Errorf("%s: size %d is negative: give the payload size in bytes (%d to %d), or 0 for the default %d", meter, size, udpHeaderLen, maxUDPSize, defaultUDPSize))
	case size > 0 && size < udpHeaderLen:
		errs = append(errs, fmt.Errorf("%s: size %d bytes cannot hold the %d-byte sequence number and timestamp: give at least %d, or 0 for the default %d", meter, size, udpHeaderLen, udpHeaderLen, defaultUDPSize))
	case size > maxUDPSize:
		errs = append(errs, fmt.Errorf("%s: size %d bytes exceeds the largest UDP payload over IPv4 (%d): give at most %d, or 0 for the default %d", meter, size, maxUDPSize, maxUDPSize, defaultUDPSize))
	}
	if grace < 0 {
		errs = append(errs, fmt.Errorf("%s: grace %v is negative: give how long to wait for late packets, or 0 for the default %v", meter, grace, defaultUDPGrace))
	}
	return errs
}

// udpRateError says what is wrong with a target rate of rate bit/s sent for d with size-byte
// payloads, or returns nil; d or size 0 skips the check that one packet fits. what names the
// field in the message.
func udpRateError(meter, what string, rate float64, size int, d time.Duration) error {
	r := strconv.FormatFloat(rate, 'f', -1, 64)
	switch {
	case math.IsNaN(rate) || math.IsInf(rate, 0) || rate <= 0:
		return fmt.Errorf("%s: %s %s bit/s is not a positive number: give the payload rate in bit/s, e.g. 1e6 for 1 Mbit/s", meter, what, r)
	case rate > maxUDPRate:
		return fmt.Errorf("%s: %s %s bit/s is above 100 Gbit/s, more than this host can send: rates are in bit/s, so 500 Mbit/s is 500e6", meter, what, r)
	}
	if d > 0 && size > 0 && rate*d.Seconds() < float64(8*size) {
		return fmt.Errorf("%s: %s %s bit/s sends not even one %d-byte packet in %v: give at least %.0f bit/s or a longer duration", meter, what, r, size, d, math.Ceil(float64(8*size)/d.Seconds()))
	}
	return nil
}
