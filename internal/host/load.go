package host

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// Load is the machine's load when a run started (meta.json's start_load).
type Load struct {
	LoadAvg1 float64 `json:"loadavg1"`
	// BusyPercent is the share of all CPUs' time not idle (nor iowait) over Sample seconds.
	BusyPercent float64 `json:"busy_percent"`
	Sample      float64 `json:"sample_s"`
}

// Thresholds of the load warning: CPU time busy over a one-second sample before the run, and
// the one-minute load average per core.
const (
	busyThreshold    = 10.0 // percent
	loadavgPerCore   = 1.0
	loadSampleLength = time.Second
)

// Hygiene samples the machine before a run and returns the load with warnings about what
// makes numbers less trustworthy: a CPU governor other than performance, unknown SMT or
// turbo state, turbo on, other load.
func Hygiene(ctx context.Context, h Facts) (*Load, []string) {
	var w []string
	switch h.Governor {
	case "performance":
	case "unknown", "":
		w = append(w, "CPU frequency governor unknown (no cpufreq in /sys, as in most VMs): the clock may change during the run")
	default:
		w = append(w, fmt.Sprintf("CPU frequency governor is %s, not performance: the clock may change during the run (cpupower frequency-set -g performance)", h.Governor))
	}
	if h.SMT == "unknown" || h.SMT == "" {
		w = append(w, "SMT state unknown (/sys/devices/system/cpu/smt/active is missing): measured threads may share a core with a sibling thread")
	}
	switch h.Turbo {
	case "unknown", "":
		w = append(w, "turbo boost state unknown (neither intel_pstate/no_turbo nor cpufreq/boost in /sys): the clock may vary with temperature and load")
	case "on":
		w = append(w, "turbo boost is on: the clock varies with temperature and load; turn it off for steadier numbers (cloudlab/README.md)")
	}
	load := &Load{Sample: loadSampleLength.Seconds()}
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		if f := strings.Fields(string(b)); len(f) > 0 {
			load.LoadAvg1, _ = strconv.ParseFloat(f[0], 64)
		}
	}
	busy, err := busyPercent(ctx, loadSampleLength)
	if err != nil {
		w = append(w, "other load unknown: "+err.Error())
		return load, w
	}
	load.BusyPercent = busy
	if busy > busyThreshold {
		w = append(w, fmt.Sprintf("other load before the run: %.0f %% of CPU time busy over %v (threshold %.0f %%): numbers may be noisier", busy, loadSampleLength, busyThreshold))
	}
	if h.Cores > 0 && load.LoadAvg1 > loadavgPerCore*float64(h.Cores) {
		w = append(w, fmt.Sprintf("other load before the run: load average %.2f on %d cores (threshold %.1f per core)", load.LoadAvg1, h.Cores, loadavgPerCore))
	}
	return load, w
}

// busyPercent samples /proc/stat over d and returns the share of CPU time that was neither
// idle nor iowait.
func busyPercent(ctx context.Context, d time.Duration) (float64, error) {
	b0, t0, err := cpuTimes()
	if err != nil {
		return 0, err
	}
	select {
	case <-ctx.Done():
		return 0, ctx.Err()
	case <-time.After(d):
	}
	b1, t1, err := cpuTimes()
	if err != nil {
		return 0, err
	}
	if t1 <= t0 {
		return 0, nil
	}
	return 100 * float64(b1-b0) / float64(t1-t0), nil
}

// cpuTimes reads the busy and total jiffies of all CPUs from /proc/stat.
func cpuTimes() (busy, total uint64, err error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0, err
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 5 || f[0] != "cpu" {
		return 0, 0, fmt.Errorf("/proc/stat: unexpected first line %q", line)
	}
	// user nice system idle iowait irq softirq steal (guest time is inside user)
	for i, s := range f[1:min(len(f), 9)] {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			return 0, 0, fmt.Errorf("/proc/stat: %w", err)
		}
		total += v
		if i != 3 && i != 4 {
			busy += v
		}
	}
	return busy, total, nil
}
