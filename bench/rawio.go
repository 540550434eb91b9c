package bench

import (
	"runtime"
	"sync"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The bulk TCP loops (TCPThroughput) read and write through rawRead and rawWrite: the
// syscall without the Go scheduler's bookkeeping around it. Through unix.Read and
// unix.Write every call enters and leaves a syscall for the scheduler; a call that blocks
// (a full send buffer, an empty receive queue) hands its P to the runtime's monitor, which
// wakes another thread to look for work and puts it back to sleep, tens of thousands of
// times a second on a saturated stream. With both ends busy on a 2-CPU machine that
// churn is CPU the data plane under test needs.
//
// Measured (issue 11, loopback, sender on CPU 0, receiver on CPU 1, TCPThroughput and
// iperf3 -c alternating, 4 s each, 3 pairs per build, load average 14-21): CPU seconds
// (user and system) per GB delivered, ours/iperf3, 1.07-1.23 through unix.Read/Write and
// 0.88-1.01 through raw syscalls with holdProcs; voluntary context switches per GB 9-13
// thousand against iperf3's 1.4-1.9 thousand, and 2.5-5.3 thousand against 2.9-3.5.
//
// A raw syscall keeps its P while it blocks, so holdProcs gives the process one P more than
// the loops that block this way: the rest of the process (the meter's interval timer, the
// garbage collector) keeps running beside them. The runtime still preempts a loop that has
// held its P for 10 ms with a signal, which ends a blocked read or write early (EINTR or a
// short count, both handled by the loops).

// The request-response loops (RequestResponse, client and echo server) use them too: a busy
// round trip blocks 60-100 µs per read, long enough for the monitor to hand the blocked
// P to a spinning thread every time. On the user-space data plane that spinning took CPU
// from the proxy process: measured (issue 11, a userspace node, client on CPU 0, server on
// CPU 1, 5000 round trips of 64 B per run, three alternations), the TCP round trip's p50 was
// 96-97 µs through unix.Read/Write and 81-87 µs through raw syscalls, UDP 102 µs and
// 87-92 µs, against sockperf's TCP 93-95 µs; on direct, where nothing else needs the CPU,
// both read 64-74 µs.

// rawRead is read(2) on fd without the scheduler's syscall bookkeeping.
func rawRead(fd int, b []byte) (int, error) {
	r, _, errno := unix.RawSyscall(unix.SYS_READ, uintptr(fd), uintptr(unsafe.Pointer(unsafe.SliceData(b))), uintptr(len(b)))
	if errno != 0 {
		return 0, errno
	}
	return int(r), nil
}

// rawWrite is write(2) on fd without the scheduler's syscall bookkeeping.
func rawWrite(fd int, b []byte) (int, error) {
	r, _, errno := unix.RawSyscall(unix.SYS_WRITE, uintptr(fd), uintptr(unsafe.Pointer(unsafe.SliceData(b))), uintptr(len(b)))
	if errno != 0 {
		return 0, errno
	}
	return int(r), nil
}

// rawRecvfrom is recvfrom(2) on fd without the scheduler's syscall bookkeeping; the
// sender's address is left in from, its length in fromLen (set it to the size of from).
func rawRecvfrom(fd int, b []byte, from *unix.RawSockaddrAny, fromLen *uint32) (int, error) {
	r, _, errno := unix.RawSyscall6(unix.SYS_RECVFROM, uintptr(fd), uintptr(unsafe.Pointer(unsafe.SliceData(b))), uintptr(len(b)),
		0, uintptr(unsafe.Pointer(from)), uintptr(unsafe.Pointer(fromLen)))
	if errno != 0 {
		return 0, errno
	}
	return int(r), nil
}

// rawSendto is sendto(2) of b to the address to of length toLen, as rawRecvfrom left it,
// without the scheduler's syscall bookkeeping.
func rawSendto(fd int, b []byte, to *unix.RawSockaddrAny, toLen uint32) error {
	_, _, errno := unix.RawSyscall6(unix.SYS_SENDTO, uintptr(fd), uintptr(unsafe.Pointer(unsafe.SliceData(b))), uintptr(len(b)),
		0, uintptr(unsafe.Pointer(to)), uintptr(toLen))
	if errno != 0 {
		return errno
	}
	return nil
}

// procsMu serialises holdProcs, so that overlapping holders (tests running meters in
// parallel) restore GOMAXPROCS in order.
var (
	procsMu   sync.Mutex
	procsHeld int
	procsBase int
)

// holdProcs raises GOMAXPROCS so that n loops blocking in raw syscalls leave at least as
// many Ps to the rest of the process as it had before, and returns the function that
// gives them back.
func holdProcs(n int) (release func()) {
	procsMu.Lock()
	defer procsMu.Unlock()
	if procsHeld == 0 {
		procsBase = runtime.GOMAXPROCS(0)
	}
	procsHeld += n
	runtime.GOMAXPROCS(procsBase + procsHeld)
	var once sync.Once
	return func() {
		once.Do(func() {
			procsMu.Lock()
			defer procsMu.Unlock()
			procsHeld -= n
			runtime.GOMAXPROCS(procsBase + procsHeld)
		})
	}
}
