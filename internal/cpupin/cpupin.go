// Package cpupin pins the threads that carry a measurement's roles — the client, the server
// and a user-space proxy — to sets of CPUs, so that a run can keep them off each other's
// cores. A run's pinning — its plan and the count of threads it failed to pin — travels in
// the context (WithPlan, FailuresIn); a meter's hot loop calls Thread(ctx, role) when it
// starts and the returned function when it ends. Nothing is counted process-wide, so two
// runs in one process (tests) each see only their own failures.
//
// Go schedules goroutines over OS threads, so only a goroutine locked to its thread can be
// pinned: Thread locks it (runtime.LockOSThread) and sets that thread's affinity
// (sched_setaffinity), and the returned function restores both. Threads the runtime starts
// while a locked thread runs are cloned by the runtime's template thread and do not inherit
// the mask; processes forked from a pinned thread (iperf3, sockperf) do. A process of its
// own (the user-space proxy's) is pinned whole by Process, every thread of it. What is not pinned:
// goroutines that do not call Thread (the runner, timers, the garbage collector), and work
// the kernel does for a role — softirq processing of veths and the bridge, TC and XDP
// programs, nftables — which runs where the kernel puts it, mostly on the CPU of the thread
// that sent the packet.
package cpupin

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// Role is a part of a measurement whose threads can be pinned.
type Role string

// The roles.
const (
	Client Role = "client"
	Server Role = "server"
	Proxy  Role = "proxy"
)

// Roles lists the roles in order.
var Roles = []Role{Client, Server, Proxy}

// Set is a set of CPUs, parsed from a list such as "0", "2-3" or "0,2,4-5".
type Set struct {
	cpus []int // sorted, unique
}

// Parse reads a CPU list in the kernel's format (cpuset(7)): numbers and ranges separated by
// commas.
func Parse(list string) (Set, error) {
	var s Set
	if strings.TrimSpace(list) == "" {
		return s, fmt.Errorf("cpu list is empty: give CPUs such as 0, 2-3 or 0,2")
	}
	for _, part := range strings.Split(list, ",") {
		part = strings.TrimSpace(part)
		lo, hi, isRange := strings.Cut(part, "-")
		a, err := strconv.Atoi(lo)
		b := a
		if err == nil && isRange {
			b, err = strconv.Atoi(hi)
		}
		if err != nil || a < 0 || b < a || b >= 1024 {
			return Set{}, fmt.Errorf("cpu list %q: %q is not a CPU number or range such as 2 or 2-3", list, part)
		}
		for c := a; c <= b; c++ {
			if !slices.Contains(s.cpus, c) {
				s.cpus = append(s.cpus, c)
			}
		}
	}
	slices.Sort(s.cpus)
	return s, nil
}

// Empty says whether the set holds no CPU (the zero Set: not pinned).
func (s Set) Empty() bool { return len(s.cpus) == 0 }

// CPUs returns the set's CPU numbers in order.
func (s Set) CPUs() []int { return slices.Clone(s.cpus) }

// String renders the set as a CPU list ("0,2-3"); "" for the empty set.
func (s Set) String() string {
	var parts []string
	for i := 0; i < len(s.cpus); {
		j := i
		for j+1 < len(s.cpus) && s.cpus[j+1] == s.cpus[j]+1 {
			j++
		}
		if j == i {
			parts = append(parts, strconv.Itoa(s.cpus[i]))
		} else {
			parts = append(parts, fmt.Sprintf("%d-%d", s.cpus[i], s.cpus[j]))
		}
		i = j + 1
	}
	return strings.Join(parts, ",")
}

func (s Set) mask() *unix.CPUSet {
	var m unix.CPUSet
	for _, c := range s.cpus {
		m.Set(c)
	}
	return &m
}

// Plan maps roles to the CPUs their threads may run on. A role without an entry is not
// pinned.
type Plan map[Role]Set

// Validate checks that every CPU of the plan is one this process may run on.
func (p Plan) Validate() error {
	var allowed unix.CPUSet
	if err := unix.SchedGetaffinity(0, &allowed); err != nil {
		return fmt.Errorf("read this process's CPU affinity: %w", err)
	}
	var errs []error
	for _, r := range Roles {
		for _, c := range p[r].cpus {
			if !allowed.IsSet(c) {
				errs = append(errs, fmt.Errorf("--cpu-%s: CPU %d is not available to this process (it may run on %s)", r, c, setOf(&allowed)))
				break
			}
		}
	}
	return errors.Join(errs...)
}

// Settings describes the plan for meta.json: each pinned role's CPU list.
func (p Plan) Settings() map[string]string {
	out := map[string]string{}
	for r, s := range p {
		if !s.Empty() {
			out[string(r)] = s.String()
		}
	}
	return out
}

func setOf(m *unix.CPUSet) string {
	var s Set
	for c := range 1024 {
		if m.IsSet(c) {
			s.cpus = append(s.cpus, c)
		}
	}
	return s.String()
}

// Pinning is one run's pinning: its plan, and how many of the run's threads could not be
// pinned. A nil *Pinning pins nothing.
type Pinning struct {
	plan     Plan
	failures atomic.Int64
}

// NewPinning returns a pinning that follows p and has counted no failure.
func NewPinning(p Plan) *Pinning { return &Pinning{plan: p} }

// Plan returns the plan the pinning follows.
func (p *Pinning) Plan() Plan {
	if p == nil {
		return nil
	}
	return p.plan
}

// Failures counts the pinnings that failed (a CPU went offline, or a cgroup's cpuset
// shrank, after Validate); those threads ran unpinned.
func (p *Pinning) Failures() int64 {
	if p == nil {
		return 0
	}
	return p.failures.Load()
}

type pinningKey struct{}

// WithPlan returns a context that carries a new pinning following p (a run's) to the meters
// and data planes.
func WithPlan(ctx context.Context, p Plan) context.Context {
	return context.WithValue(ctx, pinningKey{}, NewPinning(p))
}

// PinningFrom returns the pinning ctx carries, or nil.
func PinningFrom(ctx context.Context) *Pinning {
	p, _ := ctx.Value(pinningKey{}).(*Pinning)
	return p
}

// FromContext returns the plan ctx carries, or nil.
func FromContext(ctx context.Context) Plan { return PinningFrom(ctx).Plan() }

// FailuresIn returns how many pinnings of the run ctx carries failed; see Pinning.Failures.
func FailuresIn(ctx context.Context) int64 { return PinningFrom(ctx).Failures() }

// Thread pins the calling goroutine's thread to the CPUs ctx's plan gives role; see
// Pinning.Thread.
func Thread(ctx context.Context, role Role) (undo func()) {
	return PinningFrom(ctx).Thread(role)
}

// Thread locks the calling goroutine to its OS thread and restricts that thread to the CPUs
// the plan gives role. The returned function restores the thread's previous affinity and
// unlocks it; it must run on the same goroutine. If the previous affinity cannot be
// restored the thread stays locked, so the runtime ends it with its goroutine rather than
// reuse a pinned thread for other goroutines. A role the plan does not pin costs nothing; a
// pinning that fails is counted (Failures) and leaves the thread unpinned.
func (p *Pinning) Thread(role Role) (undo func()) {
	s := p.Plan()[role]
	if s.Empty() {
		return func() {}
	}
	runtime.LockOSThread()
	var old unix.CPUSet
	if err := unix.SchedGetaffinity(0, &old); err != nil {
		p.failures.Add(1)
		runtime.UnlockOSThread()
		return func() {}
	}
	if err := unix.SchedSetaffinity(0, s.mask()); err != nil {
		p.failures.Add(1)
		runtime.UnlockOSThread()
		return func() {}
	}
	return func() {
		if unix.SchedSetaffinity(0, &old) == nil {
			runtime.UnlockOSThread()
		}
	}
}

// Process restricts every thread of the process pid to the CPUs the plan gives role. The
// threads such a process starts later inherit the mask from the thread that starts them, so
// the whole process stays on those CPUs: its packet loop, its garbage collector and its
// runtime alike. Threads that appear while Process runs are pinned too (it looks again until
// a pass finds none unpinned). A role the plan does not pin costs nothing; a failure is
// counted (Failures) and leaves the process unpinned or partly pinned.
func (p *Pinning) Process(role Role, pid int) {
	s := p.Plan()[role]
	if s.Empty() {
		return
	}
	if err := pinProcess(pid, s.mask()); err != nil {
		p.failures.Add(1)
	}
}

// pinProcess sets the affinity of every thread of pid to m.
func pinProcess(pid int, m *unix.CPUSet) error {
	done := map[int]bool{}
	for {
		tasks, err := os.ReadDir("/proc/" + strconv.Itoa(pid) + "/task")
		if err != nil {
			return fmt.Errorf("list threads of process %d: %w", pid, err)
		}
		fresh := 0
		for _, t := range tasks {
			tid, err := strconv.Atoi(t.Name())
			if err != nil || done[tid] {
				continue
			}
			if err := unix.SchedSetaffinity(tid, m); err != nil && !errors.Is(err, unix.ESRCH) {
				return fmt.Errorf("pin thread %d of process %d: %w", tid, pid, err)
			}
			done[tid] = true
			fresh++
		}
		if fresh == 0 {
			return nil
		}
	}
}

// Allowed returns the CPUs this process may run on.
func Allowed() (Set, error) {
	var m unix.CPUSet
	if err := unix.SchedGetaffinity(0, &m); err != nil {
		return Set{}, fmt.Errorf("read this process's CPU affinity: %w", err)
	}
	var s Set
	for c := range 1024 {
		if m.IsSet(c) {
			s.cpus = append(s.cpus, c)
		}
	}
	return s, nil
}

// Apart picks two different CPUs of allowed for a client and a server, the highest two,
// clear of avoid (a proxy's CPUs) where allowed holds two others. ok is false when allowed
// holds fewer than two CPUs.
func Apart(allowed, avoid Set) (client, server Set, ok bool) {
	free := slices.DeleteFunc(allowed.CPUs(), func(c int) bool { return slices.Contains(avoid.cpus, c) })
	if len(free) < 2 {
		free = allowed.CPUs()
	}
	if len(free) < 2 {
		return Set{}, Set{}, false
	}
	n := len(free)
	return Set{cpus: []int{free[n-2]}}, Set{cpus: []int{free[n-1]}}, true
}
