package bench

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/edgebpf/edgebpf/internal/cpupin"
	"github.com/edgebpf/edgebpf/workloads/speedlimit/wire"
)

// sendCapacityWindow is how long clientSendCapacity sends.
const sendCapacityWindow = 300 * time.Millisecond

// sendRate is the datagrams per second the run's clients sent: their requests and, with
// Leave "each", as many OUT_OF_RANGE.
func (o *slOutcome) sendRate() float64 {
	if o.wall <= 0 {
		return 0
	}
	n := 0
	for _, c := range o.clients {
		n += c.sent
	}
	if o.plan.leave == LeaveEach {
		n *= 2
	}
	return float64(n) / o.wall.Seconds()
}

// clientSendCapacity measures what the client can send on its own: one thread per CPU, on
// the client role's CPUs, writes GET_SPEED_LIMIT datagrams as fast as it can for window to a
// socket on the client namespace's loopback that is never read (the kernel drops what
// overflows its buffer), and the total is returned in datagrams per second. It is the
// client's ceiling with a server that costs nothing; on veth a real send also runs part of
// the receive path in the sender's thread, as this one does on loopback.
func clientSendCapacity(ctx context.Context, ns NS, window time.Duration) (float64, error) {
	sink, sinkAddr, err := openSink(ns)
	if err != nil {
		return 0, err
	}
	defer unix.Close(sink)
	threads := runtime.NumCPU()
	fds := make([]int, 0, threads)
	defer func() {
		for _, fd := range fds {
			unix.Close(fd)
		}
	}()
	for range threads {
		var fd int
		err := ns.Do(func() error {
			var err error
			if fd, err = unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, unix.IPPROTO_UDP); err != nil {
				return fmt.Errorf("create udp socket: %w", err)
			}
			fds = append(fds, fd)
			return unix.Connect(fd, sinkAddr)
		})
		if err != nil {
			return 0, fmt.Errorf("connect to the sink: %w", err)
		}
	}
	counts := make([]int, threads)
	var wg sync.WaitGroup
	start := udpNow()
	end := start + window.Nanoseconds()
	msg := wire.Message{Op: wire.GetSpeedLimit}.Append(nil)
	for i, fd := range fds {
		wg.Go(func() {
			defer cpupin.Thread(ctx, cpupin.Client)()
			for udpNow() < end && ctx.Err() == nil {
				if _, err := unix.Write(fd, msg); err == nil {
					counts[i]++
				}
			}
		})
	}
	wg.Wait()
	total := 0
	for _, c := range counts {
		total += c
	}
	return float64(total) / (float64(udpNow()-start) / 1e9), ctx.Err()
}

// openSink opens a UDP socket on 127.0.0.1 in ns with the smallest receive buffer and
// returns it with its address.
func openSink(ns NS) (int, unix.Sockaddr, error) {
	var fd int
	var addr unix.Sockaddr
	err := ns.Do(func() error {
		var err error
		if fd, err = unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, unix.IPPROTO_UDP); err != nil {
			return fmt.Errorf("create sink socket: %w", err)
		}
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, 0)
		if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
			unix.Close(fd)
			return fmt.Errorf("bind sink socket: %w", err)
		}
		if addr, err = unix.Getsockname(fd); err != nil {
			unix.Close(fd)
			return fmt.Errorf("sink socket address: %w", err)
		}
		return nil
	})
	return fd, addr, err
}

// answeredRate is the requests per second the run's server answered.
func (o *slOutcome) answeredRate() float64 {
	if o.wall <= 0 {
		return 0
	}
	return float64(o.replies()) / o.wall.Seconds()
}
