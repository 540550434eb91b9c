package bench

import (
	"fmt"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The UDP meters' sockets are raw blocking descriptors (see sockopt.go) used from goroutines
// locked to their OS threads: a datagram's arrival wakes the receiving thread straight from
// the socket's wait queue, with no netpoller and no goroutine scheduling between the kernel
// and the timestamp, as in iperf3 and sockperf. golang.org/x/sys/unix has no recvmmsg and
// sendmmsg wrappers, so mmsgBatch calls them directly.

// mmsghdr is struct mmsghdr of <sys/socket.h> on the 64-bit platforms the project builds for.
type mmsghdr struct {
	hdr unix.Msghdr
	len uint32
	_   [4]byte
}

// mmsgBatch is a vector of up to len(bufs) datagrams over fixed buffers, for one recvmmsg
// or sendmmsg call. The buffers are Go memory the kernel writes to or reads from during
// the call only; the batch keeps them alive.
type mmsgBatch struct {
	hdrs []mmsghdr
	iovs []unix.Iovec
	bufs [][]byte
	oob  [][]byte
}

// newMmsgBatch returns a batch of n buffers of size bytes, each with oobLen bytes of
// control-message space (0 for none).
func newMmsgBatch(n, size, oobLen int) *mmsgBatch {
	b := &mmsgBatch{hdrs: make([]mmsghdr, n), iovs: make([]unix.Iovec, n), bufs: make([][]byte, n), oob: make([][]byte, n)}
	data := make([]byte, n*size)
	var oob []byte
	if oobLen > 0 {
		oob = make([]byte, n*oobLen)
	}
	for i := range n {
		b.bufs[i] = data[i*size : (i+1)*size : (i+1)*size]
		b.iovs[i].Base = &b.bufs[i][0]
		b.iovs[i].SetLen(size)
		b.hdrs[i].hdr.Iov = &b.iovs[i]
		b.hdrs[i].hdr.SetIovlen(1)
		if oobLen > 0 {
			b.oob[i] = oob[i*oobLen : (i+1)*oobLen : (i+1)*oobLen]
		}
	}
	return b
}

// recv receives up to len(b.bufs) datagrams on fd with one recvmmsg(2), blocking until the
// first arrives (MSG_WAITFORONE) or the socket's SO_RCVTIMEO passes. Datagram i is
// b.bufs[i][:b.n(i)], its flags b.flags(i), its control messages b.control(i).
func (b *mmsgBatch) recv(fd int) (int, error) {
	for i := range b.hdrs {
		h := &b.hdrs[i].hdr
		h.Flags = 0
		if len(b.oob[i]) > 0 {
			h.Control = &b.oob[i][0]
			h.SetControllen(len(b.oob[i]))
		}
	}
	r, _, errno := unix.Syscall6(unix.SYS_RECVMMSG, uintptr(fd), uintptr(unsafe.Pointer(&b.hdrs[0])),
		uintptr(len(b.hdrs)), unix.MSG_WAITFORONE, 0, 0)
	if errno != 0 {
		return 0, errno
	}
	return int(r), nil
}

// send sends the first n datagrams of the batch, each length bytes long, on the
// connected socket fd with one sendmmsg(2), and returns how many the kernel accepted.
func (b *mmsgBatch) send(fd, n, length int) (int, error) {
	if n > len(b.hdrs) || length > len(b.bufs[0]) {
		return 0, fmt.Errorf("sendmmsg: %d datagrams of %d bytes exceed the batch's %d of %d", n, length, len(b.hdrs), len(b.bufs[0]))
	}
	for i := range n {
		b.iovs[i].SetLen(length)
	}
	r, _, errno := unix.Syscall6(unix.SYS_SENDMMSG, uintptr(fd), uintptr(unsafe.Pointer(&b.hdrs[0])), uintptr(n), 0, 0, 0)
	if errno != 0 {
		return 0, errno
	}
	return int(r), nil
}

// n returns the length of received datagram i.
func (b *mmsgBatch) n(i int) int { return int(b.hdrs[i].len) }

// flags returns the msg_flags of received datagram i (MSG_TRUNC and the like).
func (b *mmsgBatch) flags(i int) int { return int(b.hdrs[i].hdr.Flags) }

// control returns the control messages received with datagram i.
func (b *mmsgBatch) control(i int) []byte {
	return b.oob[i][:min(int(b.hdrs[i].hdr.Controllen), len(b.oob[i]))]
}

// setBufferFD asks for a socket buffer of udpSocketBuf bytes on fd, past net.core.rmem_max
// / wmem_max if the process may (force: SO_RCVBUFFORCE or SO_SNDBUFFORCE, with
// CAP_NET_ADMIN), and returns the size the kernel granted.
func setBufferFD(fd, force, plain int) (int, error) {
	if unix.SetsockoptInt(fd, unix.SOL_SOCKET, force, udpSocketBuf) != nil {
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, plain, udpSocketBuf); err != nil {
			return 0, err
		}
	}
	return unix.GetsockoptInt(fd, unix.SOL_SOCKET, plain)
}
