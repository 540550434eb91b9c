package netsetup

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// ErrNotPrivileged is returned when the process cannot create namespaces and links.
var ErrNotPrivileged = errors.New("edgebpf needs root (CAP_SYS_ADMIN, CAP_NET_ADMIN and CAP_BPF) to build network namespaces: run it with sudo")

// RequirePrivileges checks for the capabilities that building a node needs.
func RequirePrivileges() error {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return fmt.Errorf("read capabilities: %w", err)
	}
	has := func(c int) bool { return data[c/32].Effective&(1<<(uint(c)%32)) != 0 }
	if !has(unix.CAP_SYS_ADMIN) || !has(unix.CAP_NET_ADMIN) {
		return ErrNotPrivileged
	}
	return nil
}

// procStartTime returns a process's start time in clock ticks since boot (field 22 of
// /proc/PID/stat); with the PID it identifies a process across PID reuse.
func procStartTime(pid int) (uint64, error) {
	_, start, err := procStat(pid)
	return start, err
}

// procStat reads a process's state letter and start time from /proc/PID/stat.
func procStat(pid int) (state byte, start uint64, err error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, 0, fmt.Errorf("read start time of process %d: %w", pid, err)
	}
	// The command name may hold spaces and parentheses: fields start after the last ')'.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, 0, fmt.Errorf("parse /proc/%d/stat: no command name", pid)
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 20 {
		return 0, 0, fmt.Errorf("parse /proc/%d/stat: %d fields", pid, len(f))
	}
	v, err := strconv.ParseUint(f[19], 10, 64)
	if err != nil {
		return 0, 0, fmt.Errorf("parse /proc/%d/stat start time: %w", pid, err)
	}
	return f[0][0], v, nil
}

// alive reports whether the process pid, started at start, still runs. A zombie (killed,
// not yet reaped by its parent) does not.
func alive(pid int, start uint64) bool {
	state, st, err := procStat(pid)
	return err == nil && st == start && state != 'Z' && state != 'X'
}

// killProcessesIn sends SIGKILL to every process whose network namespace is the one
// bind-mounted at nsPath, waits briefly for them to go, and returns their PIDs. It never
// signals itself.
func killProcessesIn(nsPath string) ([]int, error) {
	var want unix.Stat_t
	if err := unix.Stat(nsPath, &want); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return nil, nil
		}
		return nil, fmt.Errorf("stat %s: %w", nsPath, err)
	}
	killed := processesIn(want)
	for _, pid := range killed {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	pids := killed
	deadline := time.Now().Add(2 * time.Second)
	for len(pids) > 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
		pids = processesIn(want)
	}
	if len(pids) > 0 {
		return killed, fmt.Errorf("processes %v in %s did not exit after SIGKILL", pids, nsPath)
	}
	return killed, nil
}

// processesIn lists the live processes (other than this one) whose network namespace has the
// device and inode of ns. Zombies are left out: they hold no namespace.
func processesIn(ns unix.Stat_t) []int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	self := os.Getpid()
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self {
			continue
		}
		var st unix.Stat_t
		if unix.Stat("/proc/"+e.Name()+"/ns/net", &st) != nil {
			continue
		}
		if st.Dev == ns.Dev && st.Ino == ns.Ino {
			pids = append(pids, pid)
		}
	}
	return pids
}
