package bench

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/edgebpf/edgebpf/stats"
)

// SysmonConfig configures StartSysmon. Zero-valued fields take the defaults given with them.
type SysmonConfig struct {
	// Interval is the length of one sample. Default 500ms (the thesis's rate).
	Interval time.Duration
	// Processes names the processes whose CPU time is sampled, as in /proc/PID/comm (at most
	// 15 bytes, the kernel's limit). All processes of a name are summed; /proc is scanned
	// again every interval, so processes that start later are found.
	Processes []string
	// Own restricts Processes to this process and its children, so that another run's
	// processes of the same names, elsewhere on the machine, do not count.
	Own bool
}

// minSysmonInterval is the shortest interval: the kernel counts CPU time in ticks of 10 ms
// (USER_HZ 100), so shorter intervals hold no information. Per-process figures are coarse
// below about 100 ms.
const minSysmonInterval = 10 * time.Millisecond

// maxCommLen is the longest process name /proc/PID/comm holds (TASK_COMM_LEN - 1).
const maxCommLen = 15

// PhaseUnit is the XUnit of samples labelled with a phase name.
const PhaseUnit = "phase"

func (c SysmonConfig) withDefaults() SysmonConfig {
	if c.Interval == 0 {
		c.Interval = 500 * time.Millisecond
	}
	return c
}

// Validate reports every field of c that StartSysmon cannot use, one sentence each. Zero
// fields are valid: they take their defaults.
func (c SysmonConfig) Validate() error {
	d := c.withDefaults()
	var errs []error
	if d.Interval < 0 {
		errs = append(errs, fmt.Errorf("sysmon: interval %v is negative: give the time between samples, or 0 for the default 500ms", c.Interval))
	} else if d.Interval < minSysmonInterval {
		errs = append(errs, fmt.Errorf("sysmon: interval %v is below the kernel's 10ms CPU accounting tick: give at least %v", c.Interval, minSysmonInterval))
	}
	for i, p := range c.Processes {
		switch {
		case p == "":
			errs = append(errs, fmt.Errorf("sysmon: process name %d is empty: give the name as in /proc/PID/comm", i))
		case len(p) > maxCommLen:
			errs = append(errs, fmt.Errorf("sysmon: process name %q is longer than the kernel's %d bytes: give its first %d bytes, %q", p, maxCommLen, maxCommLen, p[:maxCommLen]))
		case strings.ContainsAny(p, "/\n"):
			errs = append(errs, fmt.Errorf("sysmon: process name %q contains a slash or a newline: give the name as in /proc/PID/comm, not a path", p))
		case slices.Index(c.Processes, p) < i:
			errs = append(errs, fmt.Errorf("sysmon: process name %q is given twice: give each name once", p))
		}
	}
	return errors.Join(errs...)
}

// ProcessCPUMetric is the metric of the CPU time of the processes called name, used when
// SysmonConfig.Processes names more than one process: stats.CPUProcess with ":" and the name
// appended to its name.
func ProcessCPUMetric(name string) stats.Metric {
	m := stats.CPUProcess
	m.Name += ":" + name
	return m
}

// ProcessRAMMetric is the metric of the resident memory of the processes called name:
// stats.RAM with ":" and the name appended to its name.
func ProcessRAMMetric(name string) stats.Metric {
	m := stats.RAM
	m.Name += ":" + name
	return m
}

// Sysmon samples system-wide CPU and RAM use, and the CPU time and resident memory of named processes, from
// /proc in a goroutine until Stop. It measures the whole machine, whatever namespace it runs
// in. At the end of every interval it records (Seq is the interval's index, T its end in
// seconds since StartSysmon):
//
//   - stats.CPU: the busy share of all CPUs, 100 * (1 - (idle + iowait) / total) of the
//     /proc/stat time deltas, as psutil's cpu_percent (0 to 100);
//   - stats.CPUSoftirq: the softirq share of all CPUs' time (0 to 100), where in-kernel
//     packet processing is accounted;
//   - stats.CPUProcess, when Processes is set: the utime + stime of all processes with those
//     names over the interval, in percent of ONE core, so two busy cores are 200; when more
//     than one name is given, also one series per name with ProcessCPUMetric(name). A
//     process that exits loses its CPU time since the previous sample;
//   - stats.RAM: MemTotal - MemAvailable of /proc/meminfo, in bytes;
//   - when Processes is set, ProcessRAMMetric(name) for each name: the resident sets of the
//     processes of that name at the end of the interval, summed, in bytes.
//
// Every sample carries the phase set by SetPhase as X with XUnit PhaseUnit (X empty before
// the first SetPhase). SetPhase ends the current interval, so no sample straddles two phases.
type Sysmon struct {
	cfg    SysmonConfig
	start  time.Time
	clkTck float64

	phaseCh  chan phaseChange
	stopCh   chan struct{}
	done     chan struct{}
	stopOnce sync.Once

	// Owned by the sampling goroutine until done is closed.
	phase   string
	samples []stats.Sample
	err     error
	seq     int
	prev    sysSnapshot
}

type phaseChange struct {
	name string
	done chan struct{}
}

// sysSnapshot is what /proc said at one instant.
type sysSnapshot struct {
	at       time.Time
	bootTick uint64 // CLOCK_BOOTTIME in clock ticks, the unit of a process's start time
	cpu      cpuTimes
	ram      uint64
	procs    map[procKey]procTimes
}

// procKey identifies a process across a PID's reuse.
type procKey struct {
	pid       int
	startTime uint64
}

type procTimes struct {
	name  string
	ticks uint64 // utime + stime
	rss   uint64 // resident set in bytes
}

// StartSysmon validates cfg, reads a first snapshot of /proc and starts sampling.
func StartSysmon(cfg SysmonConfig) (*Sysmon, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	s := &Sysmon{
		cfg:     cfg.withDefaults(),
		start:   time.Now(),
		clkTck:  clockTicks(),
		phaseCh: make(chan phaseChange),
		stopCh:  make(chan struct{}),
		done:    make(chan struct{}),
	}
	snap, err := s.snapshot()
	if err != nil {
		return nil, fmt.Errorf("sysmon: %w", err)
	}
	s.prev = snap
	go s.run()
	return s, nil
}

// SetPhase labels the samples that follow with name. It ends the current interval: the part
// since the last sample is recorded under the previous phase if it lasted at least half an
// interval, and dropped otherwise. SetPhase after Stop does nothing.
func (s *Sysmon) SetPhase(name string) {
	c := phaseChange{name: name, done: make(chan struct{})}
	select {
	case s.phaseCh <- c:
		<-c.done
	case <-s.done:
	}
}

// Stop ends sampling and returns the samples, the last, partial interval included if it
// lasted at least half an interval. Calling it again returns the same samples.
func (s *Sysmon) Stop() []stats.Sample {
	s.stopOnce.Do(func() { close(s.stopCh) })
	<-s.done
	return slices.Clone(s.samples)
}

// Err returns the first error met while sampling, after Stop. Samples of intervals whose
// /proc files could not be read are missing.
func (s *Sysmon) Err() error {
	select {
	case <-s.done:
		return s.err
	default:
		return nil
	}
}

func (s *Sysmon) run() {
	defer close(s.done)
	timer := time.NewTimer(s.cfg.Interval)
	defer timer.Stop()
	gridStart := s.prev.at
	k := 1
	for {
		select {
		case <-timer.C:
			s.sample()
			k++
			timer.Reset(time.Until(gridStart.Add(time.Duration(k) * s.cfg.Interval)))
		case c := <-s.phaseCh:
			s.samplePartial()
			s.phase = c.name
			gridStart, k = s.prev.at, 1
			timer.Reset(s.cfg.Interval)
			close(c.done)
		case <-s.stopCh:
			s.samplePartial()
			return
		}
	}
}

// samplePartial ends an interval early: it is recorded if it lasted at least half an
// interval, otherwise only the baseline moves on.
func (s *Sysmon) samplePartial() {
	if 2*time.Since(s.prev.at) >= s.cfg.Interval {
		s.sample()
		return
	}
	if snap, err := s.snapshot(); err != nil {
		s.fail(err)
	} else {
		s.prev = snap
	}
}

func (s *Sysmon) fail(err error) {
	if s.err == nil {
		s.err = fmt.Errorf("sysmon: %w", err)
	}
}

// sample records the interval since the previous snapshot.
func (s *Sysmon) sample() {
	cur, err := s.snapshot()
	if err != nil {
		s.fail(err)
		return
	}
	prev := s.prev
	s.prev = cur
	seq := s.seq
	s.seq++
	t := cur.at.Sub(s.start).Seconds()
	add := func(m stats.Metric, v float64) {
		smp := stats.Sample{Seq: seq, T: t, Metric: m, Value: v}
		if s.phase != "" {
			smp.X, smp.XUnit = s.phase, PhaseUnit
		}
		s.samples = append(s.samples, smp)
	}

	if busy, softirq, ok := cpuShares(prev.cpu, cur.cpu); ok {
		add(stats.CPU, busy)
		add(stats.CPUSoftirq, softirq)
	}
	if len(s.cfg.Processes) > 0 {
		perName := processTicks(prev, cur)
		secs := cur.at.Sub(prev.at).Seconds()
		pct := func(ticks uint64) float64 { return 100 * float64(ticks) / s.clkTck / secs }
		var total uint64
		for _, name := range s.cfg.Processes {
			total += perName[name]
		}
		add(stats.CPUProcess, pct(total))
		if len(s.cfg.Processes) > 1 {
			for _, name := range s.cfg.Processes {
				add(ProcessCPUMetric(name), pct(perName[name]))
			}
		}
	}
	add(stats.RAM, float64(cur.ram))
	if len(s.cfg.Processes) > 0 {
		rss := processRSS(cur)
		for _, name := range s.cfg.Processes {
			add(ProcessRAMMetric(name), float64(rss[name]))
		}
	}
}

// processTicks sums the CPU ticks each process name used between two snapshots. A process
// absent from prev counts in full if it started after prev was taken (otherwise it was
// renamed into the set, and its earlier time is not this interval's).
func processTicks(prev, cur sysSnapshot) map[string]uint64 {
	sums := make(map[string]uint64)
	for key, c := range cur.procs {
		p, seen := prev.procs[key]
		switch {
		case seen && c.ticks >= p.ticks:
			sums[c.name] += c.ticks - p.ticks
		case !seen && key.startTime >= prev.bootTick:
			sums[c.name] += c.ticks
		}
	}
	return sums
}

// processRSS sums the resident sets of each process name in a snapshot.
func processRSS(snap sysSnapshot) map[string]uint64 {
	sums := make(map[string]uint64)
	for _, p := range snap.procs {
		sums[p.name] += p.rss
	}
	return sums
}

// cpuShares returns the busy and the softirq share in percent of the time between two
// /proc/stat readings; ok is false if no time passed.
func cpuShares(prev, cur cpuTimes) (busy, softirq float64, ok bool) {
	if cur.total() <= prev.total() {
		return 0, 0, false
	}
	total := float64(cur.total() - prev.total())
	idle := float64((cur.Idle + cur.IOWait) - (prev.Idle + prev.IOWait))
	busy = min(max(100*(1-idle/total), 0), 100)
	softirq = min(max(100*float64(cur.SoftIRQ-prev.SoftIRQ)/total, 0), 100)
	return busy, softirq, true
}

// snapshot reads /proc/stat, /proc/meminfo and the configured processes.
func (s *Sysmon) snapshot() (sysSnapshot, error) {
	snap := sysSnapshot{at: time.Now()}
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts); err != nil {
		return snap, fmt.Errorf("read CLOCK_BOOTTIME: %w", err)
	}
	snap.bootTick = uint64(float64(ts.Nano()) * s.clkTck / 1e9)
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return snap, err
	}
	if snap.cpu, err = parseProcStat(b); err != nil {
		return snap, fmt.Errorf("/proc/stat: %w", err)
	}
	if b, err = os.ReadFile("/proc/meminfo"); err != nil {
		return snap, err
	}
	if snap.ram, err = parseMeminfo(b); err != nil {
		return snap, fmt.Errorf("/proc/meminfo: %w", err)
	}
	if len(s.cfg.Processes) > 0 {
		if snap.procs, err = scanProcesses(s.cfg.Processes, s.cfg.Own); err != nil {
			return snap, err
		}
	}
	return snap, nil
}

// scanProcesses reads the CPU times of all processes with one of names; with own, only of
// this process and its children.
func scanProcesses(names []string, own bool) (map[procKey]procTimes, error) {
	self := os.Getpid()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	procs := make(map[procKey]procTimes)
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid <= 0 {
			continue
		}
		path := "/proc/" + e.Name() + "/stat"
		b, err := os.ReadFile(path)
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, unix.ESRCH) {
			continue // the process exited while we scanned
		}
		if err != nil {
			return nil, err
		}
		st, err := parsePidStat(b)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		if slices.Contains(names, st.comm) && (!own || pid == self || st.ppid == self) {
			procs[procKey{pid, st.startTime}] = procTimes{name: st.comm, ticks: st.utime + st.stime, rss: st.rss * pageSize}
		}
	}
	return procs, nil
}

// pageSize is the unit of a process's resident set in /proc/PID/stat.
var pageSize = uint64(os.Getpagesize())

// cpuTimes is the aggregate "cpu" line of /proc/stat, in clock ticks.
type cpuTimes struct {
	User, Nice, System, Idle, IOWait, IRQ, SoftIRQ, Steal uint64
}

// total is the time of all states. Guest time is already part of user and nice time.
func (c cpuTimes) total() uint64 {
	return c.User + c.Nice + c.System + c.Idle + c.IOWait + c.IRQ + c.SoftIRQ + c.Steal
}

// parseProcStat parses the aggregate "cpu" line of /proc/stat.
func parseProcStat(b []byte) (cpuTimes, error) {
	for line := range strings.Lines(string(b)) {
		fields := strings.Fields(line)
		if len(fields) == 0 || fields[0] != "cpu" {
			continue
		}
		if len(fields) < 8 {
			return cpuTimes{}, fmt.Errorf("cpu line %q has %d fields, want at least 8", strings.TrimSpace(line), len(fields))
		}
		var v [8]uint64 // user nice system idle iowait irq softirq steal
		for i := range v {
			if i+1 >= len(fields) {
				break // steal is missing on old kernels
			}
			n, err := strconv.ParseUint(fields[i+1], 10, 64)
			if err != nil {
				return cpuTimes{}, fmt.Errorf("cpu line %q: field %d: %w", strings.TrimSpace(line), i+1, err)
			}
			v[i] = n
		}
		return cpuTimes{v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7]}, nil
	}
	return cpuTimes{}, errors.New("no aggregate cpu line")
}

// parseMeminfo returns MemTotal - MemAvailable of /proc/meminfo in bytes.
func parseMeminfo(b []byte) (uint64, error) {
	var total, avail uint64
	var haveTotal, haveAvail bool
	for line := range strings.Lines(string(b)) {
		key, rest, ok := strings.Cut(line, ":")
		if !ok || (key != "MemTotal" && key != "MemAvailable") {
			continue
		}
		fields := strings.Fields(rest)
		if len(fields) != 2 || fields[1] != "kB" {
			return 0, fmt.Errorf("line %q: want a number of kB", strings.TrimSpace(line))
		}
		n, err := strconv.ParseUint(fields[0], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("line %q: %w", strings.TrimSpace(line), err)
		}
		if key == "MemTotal" {
			total, haveTotal = n*1024, true
		} else {
			avail, haveAvail = n*1024, true
		}
	}
	switch {
	case !haveTotal:
		return 0, errors.New("no MemTotal line")
	case !haveAvail:
		return 0, errors.New("no MemAvailable line")
	case avail > total:
		return 0, fmt.Errorf("MemAvailable %d exceeds MemTotal %d", avail, total)
	}
	return total - avail, nil
}

// pidStat holds the fields of /proc/PID/stat that Sysmon uses; times are in clock ticks.
type pidStat struct {
	comm                    string
	ppid                    int
	utime, stime, startTime uint64
	rss                     uint64 // pages
}

// parsePidStat parses /proc/PID/stat. The name is in parentheses and may itself contain
// spaces and parentheses, so the fields start after the last ')'.
func parsePidStat(b []byte) (pidStat, error) {
	open, end := bytes.IndexByte(b, '('), bytes.LastIndexByte(b, ')')
	if open < 0 || end < open {
		return pidStat{}, errors.New("no process name in parentheses")
	}
	// fields[0] is field 3 (state); utime, stime, starttime and rss are fields 14, 15, 22 and 24.
	fields := strings.Fields(string(b[end+1:]))
	if len(fields) < 22 {
		return pidStat{}, fmt.Errorf("%d fields after the name, want at least 22", len(fields))
	}
	st := pidStat{comm: string(b[open+1 : end])}
	ppid, err := strconv.Atoi(fields[1])
	if err != nil {
		return pidStat{}, fmt.Errorf("field 4: %w", err)
	}
	st.ppid = ppid
	for _, f := range []struct {
		field int
		dst   *uint64
	}{{14, &st.utime}, {15, &st.stime}, {22, &st.startTime}, {24, &st.rss}} {
		n, err := strconv.ParseUint(fields[f.field-3], 10, 64)
		if err != nil {
			return pidStat{}, fmt.Errorf("field %d: %w", f.field, err)
		}
		*f.dst = n
	}
	return st, nil
}

// clockTicks returns the kernel's clock ticks per second (USER_HZ, sysconf(_SC_CLK_TCK)),
// the unit of /proc CPU times, from the AT_CLKTCK entry of the auxiliary vector; 100, its
// value on every common Linux, if that cannot be read.
func clockTicks() float64 {
	b, err := os.ReadFile("/proc/self/auxv")
	if err != nil {
		return 100
	}
	if hz, ok := parseAuxvClkTck(b, strconv.IntSize/8); ok {
		return float64(hz)
	}
	return 100
}

// parseAuxvClkTck finds AT_CLKTCK in an auxiliary vector of native-endian words of size
// word bytes.
func parseAuxvClkTck(b []byte, word int) (uint64, bool) {
	const atNull, atClkTck = 0, 17
	get := func(p []byte) uint64 {
		if word == 4 {
			return uint64(binary.NativeEndian.Uint32(p))
		}
		return binary.NativeEndian.Uint64(p)
	}
	for ; len(b) >= 2*word; b = b[2*word:] {
		switch get(b) {
		case atNull:
			return 0, false
		case atClkTck:
			if v := get(b[word:]); v > 0 {
				return v, true
			}
			return 0, false
		}
	}
	return 0, false
}
