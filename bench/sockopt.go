package bench

import (
	"errors"
	"fmt"
	"net/netip"
	"time"

	"golang.org/x/sys/unix"
)

// The TCP meters use raw blocking sockets from golang.org/x/sys/unix instead of package net:
// a blocking syscall measures the kernel path without netpoller wake-ups, and a 128 KiB
// read or write per syscall keeps the per-byte overhead at iperf3's level. Every socket is
// created inside an NS.Do; sockets returned by accept belong to the listener's namespace
// whichever thread calls accept. Blocking calls carry SO_RCVTIMEO/SO_SNDTIMEO so that loops
// notice a stop, and a stopping meter first shuts sockets down (which wakes blocked calls at
// once), then waits for its goroutines, and only then closes the descriptors, so a number is
// never closed while another goroutine still uses it.

// pollTimeout is the SO_RCVTIMEO/SO_SNDTIMEO of sockets used in loops: the longest a
// goroutine blocked in a syscall takes to notice a stop flag.
const pollTimeout = 200 * time.Millisecond

// checkEndpoints says what is missing from ep.
func checkEndpoints(ep Endpoints) error {
	var errs []error
	if ep.Client == nil {
		errs = append(errs, errors.New("endpoints: client namespace is nil: give the namespace to run the client in, or bench.Current{}"))
	}
	if ep.Server == nil {
		errs = append(errs, errors.New("endpoints: server namespace is nil: give the namespace to run the server in, or bench.Current{}"))
	}
	if !ep.Target.IsValid() {
		errs = append(errs, errors.New("endpoints: target address is not set: give the address the client must connect to"))
	}
	return errors.Join(errs...)
}

// sockaddr returns the address family and socket address of addr:port.
func sockaddr(addr netip.Addr, port uint16) (int, unix.Sockaddr) {
	addr = addr.Unmap()
	if addr.Is4() {
		return unix.AF_INET, &unix.SockaddrInet4{Port: int(port), Addr: addr.As4()}
	}
	return unix.AF_INET6, &unix.SockaddrInet6{Port: int(port), Addr: addr.As16()}
}

// anyAddr returns the wildcard address of family on port: 0.0.0.0 for IPv4, [::] for IPv6.
func anyAddr(family int, port uint16) unix.Sockaddr {
	if family == unix.AF_INET {
		return &unix.SockaddrInet4{Port: int(port)}
	}
	return &unix.SockaddrInet6{Port: int(port)}
}

// listenTCP creates a blocking TCP socket of family listening on all addresses on port.
// Call it inside the server's NS.Do.
func listenTCP(family int, port uint16, backlog int) (int, error) {
	fd, err := unix.Socket(family, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, unix.IPPROTO_TCP)
	if err != nil {
		return -1, fmt.Errorf("create listening socket: %w", err)
	}
	if err := listenOn(fd, family, port, backlog); err != nil {
		unix.Close(fd)
		return -1, err
	}
	return fd, nil
}

func listenOn(fd, family int, port uint16, backlog int) error {
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1); err != nil {
		return fmt.Errorf("set SO_REUSEADDR: %w", err)
	}
	if family == unix.AF_INET6 {
		// Dual stack, so an IPv6 wildcard listener also takes IPv4 clients.
		if err := unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY, 0); err != nil {
			return fmt.Errorf("clear IPV6_V6ONLY: %w", err)
		}
	}
	if err := unix.Bind(fd, anyAddr(family, port)); err != nil {
		return fmt.Errorf("bind to port %d: %w", port, err)
	}
	if err := unix.Listen(fd, backlog); err != nil {
		return fmt.Errorf("listen on port %d: %w", port, err)
	}
	// accept honours SO_RCVTIMEO, so an accept loop can check for a stop.
	return setTimeout(fd, unix.SO_RCVTIMEO, pollTimeout)
}

// setTimeout sets the socket timeout opt (SO_RCVTIMEO or SO_SNDTIMEO) of fd to d.
func setTimeout(fd, opt int, d time.Duration) error {
	tv := unix.NsecToTimeval(d.Nanoseconds())
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, opt, &tv); err != nil {
		name := "SO_RCVTIMEO"
		if opt == unix.SO_SNDTIMEO {
			name = "SO_SNDTIMEO"
		}
		return fmt.Errorf("set %s: %w", name, err)
	}
	return nil
}

// closeReset closes fd with SO_LINGER {1, 0}: the kernel sends a RST and keeps no TIME_WAIT
// socket. A failure to set the option still closes fd.
func closeReset(fd int) error {
	lerr := unix.SetsockoptLinger(fd, unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{Onoff: 1, Linger: 0})
	cerr := unix.Close(fd)
	if lerr != nil {
		return fmt.Errorf("set SO_LINGER: %w", lerr)
	}
	return cerr
}

// monotonic returns CLOCK_MONOTONIC as a duration since an arbitrary epoch.
func monotonic() time.Duration {
	var ts unix.Timespec
	// CLOCK_MONOTONIC cannot fail with a valid pointer.
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return time.Duration(ts.Nano())
}

// temporary reports whether a socket call failed only because its timeout expired or a
// signal interrupted it, so that the loop should check for a stop and call again.
func temporary(err error) bool {
	return errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR)
}

// errSetup marks a failure to configure a socket, as opposed to a failed connect.
var errSetup = errors.New("socket setup")

// blockingConnect connects fd to target with a blocking connect(2) bounded by timeout
// (SO_SNDTIMEO, which a blocking connect honours by giving up with EINPROGRESS) and returns
// the time the syscall took, from CLOCK_MONOTONIC read immediately around it. An error
// wrapping errSetup means the timeout could not be set; any other error is the connect's.
// On return the socket's SO_SNDTIMEO is timeout.
func blockingConnect(fd int, target unix.Sockaddr, timeout time.Duration) (time.Duration, error) {
	if err := setTimeout(fd, unix.SO_SNDTIMEO, timeout); err != nil {
		return 0, fmt.Errorf("%w: %w", errSetup, err)
	}
	t0 := monotonic()
	err := unix.Connect(fd, target)
	t1 := monotonic()
	if errors.Is(err, unix.EINTR) {
		// A signal interrupted the wait; the handshake goes on: wait for it to finish.
		err = finishConnect(fd, t0+timeout)
		t1 = monotonic()
	}
	if errors.Is(err, unix.EINPROGRESS) {
		err = unix.ETIMEDOUT
	}
	return t1 - t0, err
}

// finishConnect waits until the connect in progress on fd completes or the monotonic
// deadline passes, and returns its result.
func finishConnect(fd int, deadline time.Duration) error {
	for {
		left := deadline - monotonic()
		if left <= 0 {
			return unix.ETIMEDOUT
		}
		pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLOUT}}
		n, err := unix.Poll(pfd, int((left+time.Millisecond-1)/time.Millisecond))
		if errors.Is(err, unix.EINTR) || (err == nil && n == 0) {
			continue
		}
		if err != nil {
			return err
		}
		soerr, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ERROR)
		if err != nil {
			return err
		}
		if soerr != 0 {
			return unix.Errno(soerr)
		}
		return nil
	}
}
