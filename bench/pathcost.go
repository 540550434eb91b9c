package bench

// This file measures what one bottleneck rate cost the machine, for cpu_ns_per_pkt, and
// where datagrams were dropped, for limited_by.
//
// The path's CPU time is read from process CPU clocks (clock_gettime on a process's
// CPUCLOCK_SCHED clock, the scheduler's ns of run time of all its threads): this process
// (the meter's sender and receiver, and the data planes that run in it), its child
// processes (a data plane that runs as its own process) and the kernel's ksoftirqd threads
// (packet processing deferred out of the sending thread), as found when the sweep starts. Packet processing that runs in
// the sending thread's context, as most of a veth path does, is that thread's system time.
// The machine-wide busy time from /proc/stat is read as well: it includes whatever else the
// machine runs and moves in clock ticks (10 ms), so it is the coarser of the two.
//
// Note: the busy share of /proc/stat alone was the first design; on a machine shared with
// compilers and other benchmarks it measured their load, not the data plane's, and at a few
// thousand packets per second a 10 ms tick is several microseconds per packet.
//
// Both are taken net of their idle rate, read over the pause before the rate: at 1 Mbit/s
// the process's own background (the Go runtime, the data planes' idle loops, every node of
// the run) is worth hundreds of microseconds per packet and would hide the packets' cost.

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// pathCPU is a reading of the CPU clocks that carry a stream's work.
type pathCPU struct {
	at      int64         // CLOCK_MONOTONIC ns of the reading
	procs   map[int]int64 // pid -> CPU ns: this process, its children, ksoftirqd
	machine cpuTimes      // /proc/stat's aggregate line, clock ticks
}

// pathProcesses returns this process's PID, its children's and the ksoftirqd threads'.
// It scans /proc, so the sweep calls it once, not per rate.
func pathProcesses() ([]int, error) {
	self := os.Getpid()
	pids := []int{self}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid <= 0 || pid == self {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue // exited while we scanned
		}
		if comm, ppid, ok := commAndParent(b); ok && (ppid == self || strings.HasPrefix(comm, "ksoftirqd/")) {
			pids = append(pids, pid)
		}
	}
	return pids, nil
}

// readPathCPU reads the CPU clocks of pids and the machine's /proc/stat.
func readPathCPU(pids []int) (pathCPU, error) {
	r := pathCPU{at: udpNow(), procs: make(map[int]int64, len(pids))}
	for _, pid := range pids {
		if ns, ok := processCPU(pid); ok {
			r.procs[pid] = ns
		}
	}
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return r, err
	}
	if r.machine, err = parseProcStat(b); err != nil {
		return r, fmt.Errorf("/proc/stat: %w", err)
	}
	return r, nil
}

// processCPU reads the CPU time of all threads of process pid in ns; ok is false if it is
// gone.
func processCPU(pid int) (int64, bool) {
	// MAKE_PROCESS_CPUCLOCK(pid, CPUCLOCK_SCHED) of the kernel's posix-timers.h.
	const cpuclockSched = 2
	clock := int32((^pid)<<3 | cpuclockSched)
	var ts unix.Timespec
	if unix.ClockGettime(clock, &ts) != nil {
		return 0, false
	}
	return ts.Nano(), true
}

// commAndParent reads the name and parent PID from /proc/PID/stat. The name may hold
// spaces and parentheses, so the fields start after the last ')'.
func commAndParent(b []byte) (comm string, ppid int, ok bool) {
	s := string(b)
	open, end := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
	if open < 0 || end < open {
		return "", 0, false
	}
	fields := strings.Fields(s[end+1:]) // state, ppid, ...
	if len(fields) < 2 {
		return "", 0, false
	}
	ppid, err := strconv.Atoi(fields[1])
	return s[open+1 : end], ppid, err == nil
}

// pathNs returns the CPU ns the processes used from a to b. A process absent from a counts
// with all its time (it started in between); one absent from b is left out.
func pathNs(a, b pathCPU) int64 {
	var sum int64
	for pid, t := range b.procs {
		sum += max(t-a.procs[pid], 0)
	}
	return sum
}

// machineNs returns the machine's busy CPU ns from a to b: every state but idle and iowait.
func machineNs(a, b pathCPU, clkTck float64) float64 {
	busy := func(c cpuTimes) uint64 { return c.total() - c.Idle - c.IOWait }
	if busy(b.machine) < busy(a.machine) {
		return 0
	}
	return float64(busy(b.machine)-busy(a.machine)) * 1e9 / clkTck
}

// idleCost is the CPU time the path's processes and the machine spend per ns of wall time
// without traffic, read over the pause before a rate.
type idleCost struct {
	path, machine float64
}

// measureIdle reads the CPU clocks around wait (the pause before a rate) and returns their
// rates. A wait cut short by ctx returns ctx.Err().
func measureIdle(ctx context.Context, pids []int, wait time.Duration) (idleCost, error) {
	a, err := readPathCPU(pids)
	if err != nil {
		return idleCost{}, err
	}
	if err := udpPause(ctx, wait); err != nil {
		return idleCost{}, err
	}
	b, err := readPathCPU(pids)
	if err != nil || b.at <= a.at {
		return idleCost{}, err
	}
	wall := float64(b.at - a.at)
	return idleCost{path: float64(pathNs(a, b)) / wall, machine: machineNs(a, b, clockTicks()) / wall}, nil
}

// udpRcvbufErrors reads the UDP RcvbufErrors counter of the calling thread's network
// namespace: datagrams dropped because a receiving socket's buffer was full. Call it inside
// NS.Do.
func udpRcvbufErrors() (uint64, error) {
	b, err := os.ReadFile("/proc/thread-self/net/snmp")
	if err != nil {
		return 0, err
	}
	return parseSnmpUDP(string(b), "RcvbufErrors")
}

// parseSnmpUDP returns the field of the "Udp:" lines of /proc/net/snmp: a line of names,
// then a line of values.
func parseSnmpUDP(s, field string) (uint64, error) {
	var names []string
	for line := range strings.Lines(s) {
		f := strings.Fields(line)
		if len(f) == 0 || f[0] != "Udp:" {
			continue
		}
		if names == nil {
			names = f
			continue
		}
		for i, n := range names {
			if n == field && i < len(f) {
				return strconv.ParseUint(f[i], 10, 64)
			}
		}
		break
	}
	return 0, errors.New("no Udp " + field + " counter in snmp")
}
