package userspace

import (
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/edgebpf/edgebpf/netsetup"
)

// openTUN creates the TUN device name inside ns (a TUN device belongs to the namespace of
// the thread that opens /dev/net/tun) without packet information header: each read returns
// one IPv4 packet, each write injects one. The descriptor is non-blocking; the reader waits
// in poll(2) when the device has nothing to read.
func openTUN(ns *netsetup.Namespace, name string) (int, error) {
	fd := -1
	err := ns.Do(func() error {
		var err error
		fd, err = unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
		if err != nil {
			if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENODEV) || errors.Is(err, unix.ENXIO) {
				return fmt.Errorf("open /dev/net/tun: this kernel lacks TUN devices (CONFIG_TUN, module tun) or the device node is missing: %w", err)
			}
			return fmt.Errorf("open /dev/net/tun: %w", err)
		}
		ifr, err := unix.NewIfreq(name)
		if err == nil {
			ifr.SetUint16(unix.IFF_TUN | unix.IFF_NO_PI)
			err = unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr)
		}
		if err != nil {
			_ = unix.Close(fd)
			fd = -1
			return fmt.Errorf("create tun device %s: %w", name, err)
		}
		return nil
	})
	return fd, err
}

// pollInterval bounds how long the reader waits for a packet before it looks whether the
// proxy is closing.
const pollInterval = 100 * time.Millisecond

// reader reads packets from a TUN descriptor on a thread of its own: a non-blocking read,
// and when the device is empty a poll(2) that the kernel ends as soon as a packet arrives.
type reader struct {
	fd      int
	closing *atomic.Bool
	pfd     []unix.PollFd
}

func newReader(fd int, closing *atomic.Bool) *reader {
	return &reader{fd: fd, closing: closing, pfd: []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}}
}

// read returns the next packet's length, or an error once closing is set or the descriptor
// fails.
func (r *reader) read(buf []byte) (int, error) {
	for {
		if r.closing.Load() { // also under a flood, when the read never waits
			return 0, errClosing
		}
		n, err := unix.Read(r.fd, buf)
		if err == nil {
			return n, nil
		}
		if err != unix.EAGAIN && err != unix.EINTR {
			return 0, fmt.Errorf("read %s: %w", TunName, err)
		}
		r.pfd[0].Revents = 0
		if _, err := unix.Poll(r.pfd, int(pollInterval/time.Millisecond)); err != nil && err != unix.EINTR {
			return 0, fmt.Errorf("poll %s: %w", TunName, err)
		}
	}
}

var errClosing = errors.New("closing")
