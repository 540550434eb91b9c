package scenarios

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/edgebpf/edgebpf/internal/features"
	"github.com/edgebpf/edgebpf/reports"
)

// What each job needs of the machine (package features). Every job builds a node:
// namespaces, a bridge and veths. The data planes and the speed-limit configurations add
// their own; the calibration meter runs iperf3 and sockperf.
var (
	nodeNeeds      = []features.Name{features.Netns, features.Bridge, features.Veth}
	dataPlaneNeeds = map[string][]features.Name{
		"userspace": {features.TUN},
		"nftables":  {features.NFTables},
		"ebpf":      {features.BPF, features.BTF, features.TCX},
	}
	configurationNeeds = map[string][]features.Name{
		"mixed": {features.BPF, features.XDP},
		"ebpf":  {features.BPF, features.XDP},
	}
	meterNeeds = map[string][]features.Name{"reference-tools": {features.Iperf3, features.Sockperf}}
)

// needs lists the features a job needs.
func (j job) needs() []features.Name {
	n := append([]features.Name{}, nodeNeeds...)
	if j.configuration != "" {
		n = append(n, configurationNeeds[j.configuration]...)
	} else {
		n = append(n, dataPlaneNeeds[j.dataplane]...)
	}
	return append(n, meterNeeds[j.plan.Meter]...)
}

// missing says why a job cannot run on a machine with r, or "" if it can.
func (j job) missing(r features.Report) string {
	var parts []string
	for _, f := range r.Missing(j.needs()...) {
		parts = append(parts, fmt.Sprintf("this machine lacks %s (%s)", f.Name, f.Detail))
	}
	return strings.Join(parts, "; ")
}

// Verdict says whether one experiment can run on one data plane (or in one configuration)
// on a machine, and why not.
type Verdict struct {
	Experiment string
	Optional   bool
	DataPlane  string // the data plane, or the configuration
	// Configuration says DataPlane is a speed-limit server configuration (on direct).
	Configuration bool
	Reason        string // "" when it can run
}

// Feasibility tells, for every experiment of the suite (optional ones too) on every data
// plane in planes — or in each of its configurations —, whether a machine with r can run it.
func Feasibility(s *Suite, planes []string, r features.Report) ([]Verdict, error) {
	o := RunOptions{Suite: s, Experiments: s.Names(), DataPlanes: planes, Profile: "smoke", Warmup: new(bool)}
	jobs, _, err := o.prepare()
	if err != nil {
		return nil, err
	}
	out := make([]Verdict, len(jobs))
	for i, j := range jobs {
		e, _ := s.Select([]string{j.plan.Experiment})
		out[i] = Verdict{Experiment: j.plan.Experiment, Optional: e[0].Optional, DataPlane: j.dataplane,
			Configuration: j.configuration != "", Reason: j.missing(r)}
	}
	return out, nil
}

// pinningNote says what --cpu-* pin, for meta.json.
const pinningNote = "pinned: the meters' client and server loops and the iperf3/sockperf processes they start, " +
	"the speed-limit server's loop, the userspace proxy's packet loop; not pinned: other goroutines of the " +
	"process, and kernel work (veth, bridge, TC/XDP programs, nftables), which runs mostly on the sending thread's CPU"

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
func Hygiene(ctx context.Context, h reports.Host) (*reports.LoadMeta, []string) {
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
	load := &reports.LoadMeta{Sample: loadSampleLength.Seconds()}
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
