// Package host holds what edgebpf finds out about the machine it runs on: its facts (kernel,
// CPU, cores, governor, SMT, turbo, memory), the versions of the external tools a run uses,
// and the load sample taken before a run with the warnings about what makes numbers less
// trustworthy. reports records them in meta.json (reports.Host and reports.LoadMeta are
// aliases of Facts and Load); scenarios and `edgebpf check` collect them.
//
// The kernel feature probe, which builds a throwaway node, lives in the subpackage probe, so
// that this package and reports need nothing of netsetup.
package host

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"

	"golang.org/x/sys/unix"
)

// Facts describes the machine a run measured on (meta.json's host).
type Facts struct {
	Hostname string `json:"hostname"`
	Kernel   string `json:"kernel"`
	Arch     string `json:"arch"`
	CPUModel string `json:"cpu_model"`
	Cores    int    `json:"cores"`
	Governor string `json:"governor"`
	// SMT and Turbo are "on", "off" or "unknown" (what /sys says).
	SMT       string `json:"smt,omitempty"`
	Turbo     string `json:"turbo,omitempty"`
	MemTotal  uint64 `json:"mem_total_bytes"`
	GoVersion string `json:"go_version"`
}

// Collect reads the machine's description from uname, /proc and /sys.
func Collect() Facts {
	h := Facts{Arch: runtime.GOARCH, Cores: runtime.NumCPU(), GoVersion: runtime.Version(), Governor: "unknown"}
	h.Hostname, _ = os.Hostname()
	var u unix.Utsname
	if unix.Uname(&u) == nil {
		h.Kernel = unix.ByteSliceToString(u.Release[:])
	}
	if f, err := os.Open("/proc/cpuinfo"); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
				h.CPUModel = strings.TrimSpace(v)
				break
			}
		}
		f.Close()
	}
	h.Governor = Governor()
	h.SMT, h.Turbo = smtState(), turboState()
	var si unix.Sysinfo_t
	if unix.Sysinfo(&si) == nil {
		h.MemTotal = uint64(si.Totalram) * uint64(si.Unit)
	}
	return h
}

// Governor returns the CPU frequency governor: one name when every CPU has the same, a list
// ("performance,powersave") when they differ, "unknown" without cpufreq (as in most VMs).
func Governor() string {
	paths, _ := filepath.Glob("/sys/devices/system/cpu/cpu[0-9]*/cpufreq/scaling_governor")
	var govs []string
	for _, p := range paths {
		if b, err := os.ReadFile(p); err == nil {
			if g := strings.TrimSpace(string(b)); !slices.Contains(govs, g) {
				govs = append(govs, g)
			}
		}
	}
	if len(govs) == 0 {
		return "unknown"
	}
	slices.Sort(govs)
	return strings.Join(govs, ",")
}

// smtState reads whether simultaneous multithreading is active.
func smtState() string {
	if v, ok := sysFlag("/sys/devices/system/cpu/smt/active", "1", "0"); ok {
		return v
	}
	return "unknown"
}

// turboState reads whether the CPU may boost above its base clock: intel_pstate's no_turbo,
// else cpufreq's boost (acpi-cpufreq, amd-pstate).
func turboState() string {
	if v, ok := sysFlag("/sys/devices/system/cpu/intel_pstate/no_turbo", "0", "1"); ok {
		return v
	}
	if v, ok := sysFlag("/sys/devices/system/cpu/cpufreq/boost", "1", "0"); ok {
		return v
	}
	return "unknown"
}

// sysFlag reads a sysfs flag file and says "on" when it holds on, "off" when it holds off;
// ok is false when the file is missing or holds anything else.
func sysFlag(path, on, off string) (string, bool) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", false
	}
	switch strings.TrimSpace(string(b)) {
	case on:
		return "on", true
	case off:
		return "off", true
	}
	return "", false
}

// ToolVersions returns the first line of `NAME --version` (or -v) for each installed tool.
func ToolVersions(names ...string) map[string]string {
	out := map[string]string{}
	for _, n := range names {
		p, err := exec.LookPath(n)
		if err != nil {
			continue
		}
		b, _ := exec.Command(p, "--version").CombinedOutput()
		line, _, _ := strings.Cut(strings.TrimSpace(string(b)), "\n")
		out[n] = line
	}
	return out
}
