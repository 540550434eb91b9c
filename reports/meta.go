package reports

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime/debug"
	"time"

	"github.com/edgebpf/edgebpf/internal/atomicfile"
	"github.com/edgebpf/edgebpf/internal/host"
)

// SchemaVersion is the version of the results layout (meta.json and the raw CSV) this
// build writes. A meta.json without "schema" is version 1, which predates the field.
const SchemaVersion = 1

// Meta is meta.json: everything needed to know what a run measured, where and how.
type Meta struct {
	// Schema is the results layout's SchemaVersion; 0 (absent) reads as 1.
	Schema      int               `json:"schema,omitempty"`
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
	// Features is what the machine offers (edgebpf check); experiments that need a missing
	// one are skipped with the reason.
	Features []FeatureMeta `json:"features,omitempty"`
	// Pinning maps the roles whose threads were pinned (client, server, proxy) to their
	// CPU lists; PinningNote says what that covers.
	Pinning     map[string]string `json:"pinning,omitempty"`
	PinningNote string            `json:"pinning_note,omitempty"`
	// Schedule says in which order repetitions ran; Warmup whether and how each
	// (experiment, data plane) was warmed up first.
	Schedule string      `json:"schedule,omitempty"`
	Warmup   *WarmupMeta `json:"warmup,omitempty"`
	// BPFStats says the kernel counted BPF programs' run time during the run (edgebpf run
	// --bpf-stats): bpf_ns_per_pkt samples are recorded, and every BPF program ran with two
	// clock reads more per packet.
	BPFStats bool `json:"bpf_stats,omitempty"`
	// StartLoad is the machine's load just before the run.
	StartLoad *LoadMeta  `json:"start_load,omitempty"`
	Started   time.Time  `json:"started"`
	Ended     *time.Time `json:"ended,omitempty"`
	Status    string     `json:"status"` // running, done, failed, interrupted
	// Warnings are conditions that make numbers less trustworthy (CPU governor, SMT and
	// turbo state, other load) and problems that did not stop the run.
	Warnings []string `json:"warnings,omitempty"`
}

// FeatureMeta records one kernel or machine feature: available or not, and what was found.
type FeatureMeta struct {
	Name   string `json:"name"`
	OK     bool   `json:"ok"`
	Detail string `json:"detail"`
}

// WarmupMeta records the warm-up: one unrecorded run per (experiment, data plane) before its
// first repetition, with the parameters of Profile.
type WarmupMeta struct {
	Enabled bool   `json:"enabled"`
	Profile string `json:"profile,omitempty"`
}

// LoadMeta is the machine's load when a run started (package host takes the sample).
type LoadMeta = host.Load

// Host describes the machine a run measured on (package host collects it).
type Host = host.Facts

// DataPlaneMeta records a data plane and its settings.
type DataPlaneMeta struct {
	Name     string            `json:"name"`
	Settings map[string]string `json:"settings,omitempty"`
}

// ExperimentMeta records one experiment's parameters and outcome.
type ExperimentMeta struct {
	Name      string `json:"name"`
	DataPlane string `json:"dataplane"`
	Meter     string `json:"meter"`
	Reps      int    `json:"reps"`
	Params    any    `json:"params"`
	Status    string `json:"status"` // pending, running, done, failed, interrupted, skipped
	Error     string `json:"error,omitempty"`
	// SkipReason says why a skipped experiment did not run (a missing kernel feature or
	// tool, an interrupted run).
	SkipReason string     `json:"skip_reason,omitempty"`
	Started    *time.Time `json:"started,omitempty"`
	Ended      *time.Time `json:"ended,omitempty"`
	// Warmup is the unrecorded warm-up run, Reps every recorded repetition, in the order
	// they ran.
	Warmup   *RepMeta  `json:"warmup,omitempty"`
	RepTimes []RepMeta `json:"rep_times,omitempty"`
	Warnings []string  `json:"warnings,omitempty"`
	// Pinning maps the roles whose threads were pinned in this experiment to their CPU
	// lists: the run's --cpu-* flags, or the experiment's default placement.
	Pinning map[string]string `json:"pinning,omitempty"`
	// Placement is "apart" where the experiment's default placement pinned the client and
	// the server to two different CPUs (no --cpu-client or --cpu-server was given).
	Placement string `json:"placement,omitempty"`
}

// RepMeta records when one repetition ran and how many samples it gave.
type RepMeta struct {
	Rep     int       `json:"rep"`
	Started time.Time `json:"started"`
	Ended   time.Time `json:"ended"`
	Samples int       `json:"samples"`
}

// SchemaVersion returns the results layout version the run was written with.
func (m *Meta) SchemaVersion() int {
	if m.Schema == 0 {
		return 1
	}
	return m.Schema
}

// WriteMeta writes dir/meta.json atomically, with the current SchemaVersion when m has
// none.
func WriteMeta(dir string, m *Meta) error {
	if m.Schema == 0 {
		m.Schema = SchemaVersion
	}
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
