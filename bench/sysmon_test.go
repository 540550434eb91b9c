package bench

import (
	"encoding/binary"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/edgebpf/edgebpf/stats"
)

func TestSysmonParseProcStat(t *testing.T) {
	const stat = `cpu  8705 3 4896 73201 347 1 156 31 7 0
cpu0 3968 0 2139 37448 27 0 53 13 0 0
intr 1 2 3
`
	got, err := parseProcStat([]byte(stat))
	require.NoError(t, err)
	assert.Equal(t, cpuTimes{User: 8705, Nice: 3, System: 4896, Idle: 73201, IOWait: 347, IRQ: 1, SoftIRQ: 156, Steal: 31}, got)
	assert.Equal(t, uint64(8705+3+4896+73201+347+1+156+31), got.total(), "guest time is not counted twice")

	got, err = parseProcStat([]byte("cpu 1 2 3 4 5 6 7\n"))
	require.NoError(t, err, "a kernel without steal time")
	assert.Equal(t, uint64(7), got.SoftIRQ)

	for _, bad := range []string{"", "cpu0 1 2 3 4 5 6 7 8\n", "cpu 1 2 3\n", "cpu 1 2 x 4 5 6 7 8\n", "cpu 1 2 -3 4 5 6 7 8\n"} {
		_, err := parseProcStat([]byte(bad))
		assert.Error(t, err, "%q", bad)
	}
}

func TestSysmonParseMeminfo(t *testing.T) {
	const meminfo = `MemTotal:       24684084 kB
MemFree:        24000000 kB
MemAvailable:   24317232 kB
HugePages_Total:       0
`
	used, err := parseMeminfo([]byte(meminfo))
	require.NoError(t, err)
	assert.Equal(t, uint64(24684084-24317232)*1024, used)

	for _, bad := range []string{
		"MemAvailable: 1 kB\n",
		"MemTotal: 1 kB\n",
		"MemTotal: x kB\nMemAvailable: 1 kB\n",
		"MemTotal: 1 MB\nMemAvailable: 1 kB\n",
		"MemTotal: 1 kB\nMemAvailable: 2 kB\n",
	} {
		_, err := parseMeminfo([]byte(bad))
		assert.Error(t, err, "%q", bad)
	}
}

func TestSysmonParsePidStat(t *testing.T) {
	const stat = "11235 (a (b) c) R 11199 11199 3099 0 -1 4194304 99 0 0 0 17 4 0 0 20 0 1 0 44033 3133440 379 18446744073709551615 0 0\n"
	got, err := parsePidStat([]byte(stat))
	require.NoError(t, err)
	assert.Equal(t, pidStat{comm: "a (b) c", ppid: 11199, utime: 17, stime: 4, startTime: 44033, rss: 379}, got)

	for _, bad := range []string{"", "1 cat R 1 2", "1 (cat) R 1 2 3", "1 (cat) R 11199 11199 3099 0 -1 4194304 99 0 0 0 x 4 0 0 20 0 1 0 44033 3133440"} {
		_, err := parsePidStat([]byte(bad))
		assert.Error(t, err, "%q", bad)
	}

	b, err := os.ReadFile("/proc/self/stat")
	require.NoError(t, err)
	self, err := parsePidStat(b)
	require.NoError(t, err)
	comm, err := os.ReadFile("/proc/self/comm")
	require.NoError(t, err)
	assert.Equal(t, strings.TrimSpace(string(comm)), self.comm)
	assert.NotZero(t, self.rss, "this process has resident pages")
	assert.Equal(t, os.Getppid(), self.ppid)
}

func TestSysmonParseAuxvClkTck(t *testing.T) {
	auxv := binary.NativeEndian.AppendUint64(nil, 6) // AT_PAGESZ
	auxv = binary.NativeEndian.AppendUint64(auxv, 4096)
	auxv = binary.NativeEndian.AppendUint64(auxv, 17) // AT_CLKTCK
	auxv = binary.NativeEndian.AppendUint64(auxv, 250)
	auxv = binary.NativeEndian.AppendUint64(auxv, 0)
	auxv = binary.NativeEndian.AppendUint64(auxv, 0)
	hz, ok := parseAuxvClkTck(auxv, 8)
	require.True(t, ok)
	assert.Equal(t, uint64(250), hz)
	_, ok = parseAuxvClkTck(auxv[:16], 8)
	assert.False(t, ok, "no AT_CLKTCK")
	assert.Equal(t, 100.0, clockTicks(), "USER_HZ is 100 on this kernel")
}

func TestSysmonCPUShares(t *testing.T) {
	prev := cpuTimes{User: 100, Idle: 100, SoftIRQ: 10}
	busy, softirq, ok := cpuShares(prev, cpuTimes{User: 150, Idle: 140, IOWait: 10, SoftIRQ: 10 + 50})
	require.True(t, ok)
	assert.InDelta(t, 66.67, busy, 0.01, "100 of 150 ticks busy")
	assert.InDelta(t, 33.33, softirq, 0.01)
	_, _, ok = cpuShares(prev, prev)
	assert.False(t, ok, "no time passed")
}

func TestSysmonProcessTicks(t *testing.T) {
	prev := sysSnapshot{bootTick: 1000, procs: map[procKey]procTimes{
		{1, 10}: {name: "a", ticks: 100},
		{2, 20}: {name: "b", ticks: 50},
	}}
	cur := sysSnapshot{bootTick: 1050, procs: map[procKey]procTimes{
		{1, 10}:   {name: "a", ticks: 130, rss: 4096}, // +30
		{2, 1020}: {name: "b", ticks: 5, rss: 8192},   // PID 2 reused by a process started in the interval: all 5
		{3, 1001}: {name: "a", ticks: 7, rss: 4096},   // started in the interval: all 7
		{4, 500}:  {name: "a", ticks: 900},            // older, renamed into the set: none of it
	}}
	assert.Equal(t, map[string]uint64{"a": 37, "b": 5}, processTicks(prev, cur))
	assert.Equal(t, map[string]uint64{"a": 8192, "b": 8192}, processRSS(cur), "resident sets summed per name")
}

func TestSysmonValidate(t *testing.T) {
	assert.NoError(t, SysmonConfig{}.Validate())
	assert.NoError(t, SysmonConfig{Processes: []string{"nginx", "edgebpf-proxy"}}.Validate())
	for _, tc := range []struct {
		cfg  SysmonConfig
		want string
	}{
		{SysmonConfig{Interval: -time.Second}, "interval -1s is negative"},
		{SysmonConfig{Interval: time.Millisecond}, "give at least 10ms"},
		{SysmonConfig{Processes: []string{""}}, "process name 0 is empty"},
		{SysmonConfig{Processes: []string{"a-very-long-process-name"}}, `give its first 15 bytes, "a-very-long-pro"`},
		{SysmonConfig{Processes: []string{"/usr/bin/x"}}, "not a path"},
		{SysmonConfig{Processes: []string{"x", "x"}}, `"x" is given twice`},
	} {
		err := tc.cfg.Validate()
		require.Error(t, err, "%+v", tc.cfg)
		assert.Contains(t, err.Error(), tc.want)
	}
	_, err := StartSysmon(SysmonConfig{Interval: -1})
	assert.Error(t, err)
}

// sysmonSelfComm is this test binary's process name as the kernel shows it.
func sysmonSelfComm() string {
	name := filepath.Base(os.Args[0])
	return name[:min(len(name), maxCommLen)]
}

func TestSysmonLive(t *testing.T) {
	tcpCheckLeaks(t)
	self := sysmonSelfComm()
	m, err := StartSysmon(SysmonConfig{Interval: 50 * time.Millisecond, Processes: []string{self}})
	require.NoError(t, err)

	time.Sleep(200 * time.Millisecond)
	m.SetPhase("idle")
	time.Sleep(200 * time.Millisecond)
	m.SetPhase("busy")
	var stop atomic.Bool
	done := make(chan struct{})
	go func() {
		defer close(done)
		for !stop.Load() {
		}
	}()
	time.Sleep(300 * time.Millisecond)
	stop.Store(true)
	<-done
	samples := m.Stop()
	require.NoError(t, m.Err())
	assert.Equal(t, samples, m.Stop(), "Stop is idempotent")
	m.SetPhase("after") // no effect, no hang

	phases := map[string]int{}
	var prevT float64
	for _, s := range samples {
		phases[s.X]++
		assert.GreaterOrEqual(t, s.T, prevT, "T grows")
		prevT = s.T
		if s.X == "" {
			assert.Empty(t, s.XUnit)
		} else {
			assert.Equal(t, PhaseUnit, s.XUnit)
		}
		switch s.Metric {
		case stats.CPU, stats.CPUSoftirq:
			assert.GreaterOrEqual(t, s.Value, 0.0)
			assert.LessOrEqual(t, s.Value, 100.0)
		case stats.RAM, ProcessRAMMetric(self):
			assert.Greater(t, s.Value, 0.0)
		case stats.CPUProcess:
			assert.GreaterOrEqual(t, s.Value, 0.0)
		default:
			t.Errorf("unexpected metric %v", s.Metric)
		}
	}
	assert.Equal(t, []string{"", "busy", "idle"}, sysmonKeys(phases))

	busy := 0.0
	for _, s := range tcpSamplesOf(samples, stats.CPUProcess) {
		if s.X == "busy" {
			busy = max(busy, s.Value)
		}
	}
	assert.Greater(t, busy, 0.0, "a spinning goroutine of %q shows", self)
	assert.NotEmpty(t, tcpSamplesOf(samples, stats.CPU))
	assert.NotEmpty(t, tcpSamplesOf(samples, stats.RAM))
	assert.NotEmpty(t, tcpSamplesOf(samples, ProcessRAMMetric(self)), "the process's resident memory")
}

func TestSysmonFindsLaterProcesses(t *testing.T) {
	tcpCheckLeaks(t)
	// A process's name is the base name of the file it runs, links included.
	const name = "edgebpfbusy"
	sh, err := exec.LookPath("sh")
	require.NoError(t, err)
	link := filepath.Join(t.TempDir(), name)
	require.NoError(t, os.Symlink(sh, link))

	m, err := StartSysmon(SysmonConfig{Interval: 50 * time.Millisecond, Processes: []string{name, "edgebpf-none"}})
	require.NoError(t, err)
	time.Sleep(100 * time.Millisecond)
	cmd := exec.Command(link, "-c", "while :; do :; done")
	require.NoError(t, cmd.Start())
	time.Sleep(300 * time.Millisecond)
	require.NoError(t, cmd.Process.Kill())
	_ = cmd.Wait()
	samples := m.Stop()
	require.NoError(t, m.Err())

	peak := func(metric stats.Metric) float64 {
		v := 0.0
		for _, s := range tcpSamplesOf(samples, metric) {
			v = max(v, s.Value)
		}
		return v
	}
	assert.Greater(t, peak(ProcessCPUMetric(name)), 0.0, "the busy shell started after StartSysmon")
	// One thread uses at most one core; clock-tick accounting over short intervals on a
	// loaded machine can overshoot by tens of percent, never to two cores.
	assert.Less(t, peak(ProcessCPUMetric(name)), 200.0, "one thread uses at most one core")
	assert.Equal(t, peak(ProcessCPUMetric(name)), peak(stats.CPUProcess), "the sum over names")
	assert.NotEmpty(t, tcpSamplesOf(samples, ProcessCPUMetric("edgebpf-none")))
	assert.Zero(t, peak(ProcessCPUMetric("edgebpf-none")))
	assert.Greater(t, peak(ProcessRAMMetric(name)), 0.0, "the shell's resident memory")
	assert.Zero(t, peak(ProcessRAMMetric("edgebpf-none")), "no process, no memory")
}

func sysmonKeys(m map[string]int) []string {
	var keys []string
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// TestSysmonOwnProcesses checks that Own counts this process's children and not a process of
// the same name that another process started.
func TestSysmonOwnProcesses(t *testing.T) {
	const name = "edgebpfown"
	sh, err := exec.LookPath("sh")
	require.NoError(t, err)
	link := filepath.Join(t.TempDir(), name)
	require.NoError(t, os.Symlink(sh, link))
	start := func(c *exec.Cmd) {
		c.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		require.NoError(t, c.Start())
		t.Cleanup(func() {
			_ = syscall.Kill(-c.Process.Pid, syscall.SIGKILL) // the group: a grandchild too
			_ = c.Wait()
		})
	}
	// A grandchild, started by a shell: its parent is not this process. Neither shell execs
	// its sleep, so both keep their name.
	other := exec.Command(sh, "-c", link+" -c 'sleep 30; exit 0' & wait")
	start(other)
	child := exec.Command(link, "-c", "sleep 30; exit 0")
	start(child)
	parentOf := func(pid int) int {
		b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
		if err != nil {
			return 0
		}
		st, _ := parsePidStat(b)
		return st.ppid
	}
	grandchild := 0
	require.Eventually(t, func() bool {
		all, err := scanProcesses([]string{name}, false)
		for k := range all {
			if parentOf(k.pid) == other.Process.Pid {
				grandchild = k.pid
			}
		}
		return err == nil && grandchild != 0
	}, 5*time.Second, 10*time.Millisecond, "the other shell runs")
	own, err := scanProcesses([]string{name}, true)
	require.NoError(t, err)
	var pids []int
	for k := range own {
		pids = append(pids, k.pid)
	}
	assert.Equal(t, []int{child.Process.Pid}, pids, "only this process's child, not %d", grandchild)
}
