package reports

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/edgebpf/edgebpf/internal/atomicfile"
)

// Meta is meta.json: everything needed to know what a run measured, where and how.
type Meta struct {
	Tool        string            `json:"tool"`
	Version     string            `json:"version"`
	Commit      string            `json:"commit"`
	Command     []string          `json:"command"`
	Host        Host              `json:"host"`
	Profile     string            `json:"profile"`
	DataPlanes  []DataPlaneMeta   `json:"dataplanes"`
	Experiments []ExperimentMeta  `json:"experiments"`
	Topology    map[string]any    `json:"topology,omitempty"`
	Tools       map[string]string `json:"tools,omitempty"`
	XDPMode     string            `json:"xdp_mode"`
	Started     time.Time         `json:"started"`
	Ended       *time.Time        `json:"ended,omitempty"`
	Status      string            `json:"status"` // running, done, failed, interrupted
	Warnings    []string          `json:"warnings,omitempty"`
}

// Host describes the machine a run measured on.
type Host struct {
	Hostname  string `json:"hostname"`
	Kernel    string `json:"kernel"`
	Arch      string `json:"arch"`
	CPUModel  string `json:"cpu_model"`
	Cores     int    `json:"cores"`
	Governor  string `json:"governor"`
	MemTotal  uint64 `json:"mem_total_bytes"`
	GoVersion string `json:"go_version"`
}

// DataPlaneMeta records a data plane and its settings.
type DataPlaneMeta struct {
	Name     string            `json:"name"`
	Settings map[string]string `json:"settings,omitempty"`
}

// ExperimentMeta records one experiment's parameters and outcome.
type ExperimentMeta struct {
	Name      string     `json:"name"`
	DataPlane string     `json:"dataplane"`
	Meter     string     `json:"meter"`
	Reps      int        `json:"reps"`
	Params    any        `json:"params"`
	Status    string     `json:"status"` // pending, running, done, failed, interrupted
	Error     string     `json:"error,omitempty"`
	Started   *time.Time `json:"started,omitempty"`
	Ended     *time.Time `json:"ended,omitempty"`
	Warnings  []string   `json:"warnings,omitempty"`
}

// WriteMeta writes dir/meta.json atomically.
func WriteMeta(dir string, m *Meta) error {
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return fmt.Errorf("encode meta.json: %w", err)
	}
	return atomicfile.Write(filepath.Join(dir, "meta.json"), append(b, '\n'), 0o644)
}

// ReadMeta reads dir/meta.json.
func ReadMeta(dir string) (*Meta, error) {
	m, err := readJSON[Meta](filepath.Join(dir, "meta.json"))
	if err != nil {
		return nil, err
	}
	return &m, nil
}

func readJSON[T any](path string) (T, error) {
	var v T
	b, err := os.ReadFile(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return v, &missingError{path}
		}
		return v, err
	}
	if err := json.Unmarshal(b, &v); err != nil {
		return v, fmt.Errorf("parse %s: %w", path, err)
	}
	return v, nil
}

// missingError says that a file of a results directory does not exist; it matches
// os.ErrNotExist.
type missingError struct{ path string }

func (e *missingError) Error() string {
	return fmt.Sprintf("%s does not exist: is %s an edgebpf results directory?", e.path, filepath.Dir(e.path))
}

func (e *missingError) Unwrap() error { return os.ErrNotExist }

// Version and Commit are set at build time by the Makefile (-ldflags -X); when unset the
// module's build information is used.
var (
	Version = "dev"
	Commit  = ""
)

// BuildCommit returns the commit the binary was built from, or "unknown".
func BuildCommit() string {
	if Commit != "" {
		return Commit
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" {
				return s.Value
			}
		}
	}
	return "unknown"
}

// CollectHost reads the machine's description from uname, /proc and /sys.
func CollectHost() Host {
	h := Host{Arch: runtime.GOARCH, Cores: runtime.NumCPU(), GoVersion: runtime.Version(), Governor: "unknown"}
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
	if b, err := os.ReadFile("/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor"); err == nil {
		h.Governor = strings.TrimSpace(string(b))
	}
	var si unix.Sysinfo_t
	if unix.Sysinfo(&si) == nil {
		h.MemTotal = uint64(si.Totalram) * uint64(si.Unit)
	}
	return h
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
