// Package scenarios describes edgebpf's experiments as data — which meter, which parameters
// per profile, how many repetitions — and runs them: it builds a node from netsetup, deploys
// a data plane, runs a meter from bench between a client and a server instance, and hands the
// samples to reports. The built-in suite is suite.json, embedded in the binary; a user can
// pass a file of the same shape.
package scenarios

import (
	"bytes"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
)

//go:embed suite.json
var builtin []byte

// Profiles, in order of cost: smoke (seconds, for tests), ci (the headline metrics with
// enough repetitions for a regression gate, about two minutes), quick (the whole suite in
// minutes), full (the theses' own parameters). An experiment defines a non-empty subset of
// them; the built-in suite gives ci only to the experiments a CI gate compares (latency,
// latency-rr, throughput, resources), so `run all --profile ci` runs those. Its repetitions
// are many and short (64 of 500 busy round trips, 48 of 0.5 s of throughput): load from
// other processes on a shared host comes in episodes, and the shorter the repetition, the
// fewer of them an episode spoils, and the rank test is robust to a minority of spoilt ones.
var Profiles = []string{"smoke", "ci", "quick", "full"}

// Suite is a set of experiments.
type Suite struct {
	Experiments []Experiment `json:"experiments"`
	// Topology is where the suite's services live (default same-node); the command line's
	// --topology, --workers, --placement and --underlay-rate override its fields.
	Topology *Topology `json:"topology,omitempty"`
}

// Experiment is one experiment: a meter and its parameters per profile.
type Experiment struct {
	Name        string             `json:"name"`
	Source      string             `json:"source"` // the thesis it reproduces, or "edgebpf"
	Description string             `json:"description"`
	Meter       string             `json:"meter"`
	Profiles    map[string]Profile `json:"profiles"`
	// Optional experiments run only when named, never as part of all: they need more than
	// the harness (such as external tools) or measure the harness itself.
	Optional bool `json:"optional,omitempty"`
	// Configurations, for meters that deploy a server of their own (the speed-limit
	// experiments), are the server configurations to compare. Such an experiment runs once
	// per configuration on a node with the direct data plane, whatever --dataplane says, and
	// its results carry the configuration in their dataplane column.
	Configurations []string `json:"configurations,omitempty"`
	// Placement, PlacementApart or empty, is where the experiment's client and server run
	// when the run pins neither (no --cpu-client, no --cpu-server): PlacementApart pins them
	// to two different CPUs, our meters' threads and the reference tools alike; empty leaves
	// them to the scheduler.
	Placement string `json:"placement,omitempty"`
}

// PlacementApart pins an experiment's client and server to two different CPUs
// (Experiment.Placement).
const PlacementApart = "apart"

// Profile is an experiment's parameters under one profile.
type Profile struct {
	Reps   int             `json:"reps"`
	Params json.RawMessage `json:"params"`
}

// Builtin returns the suite embedded in the binary.
func Builtin() *Suite {
	s, err := Parse(bytes.NewReader(builtin), "suite.json")
	if err != nil {
		panic("scenarios: built-in suite is invalid: " + err.Error())
	}
	return s
}

// Parse reads and checks a suite: malformed JSON (with its line and column), unknown fields,
// unknown meters, an experiment without any profile and parameters a meter rejects are
// errors naming the experiment and profile. An experiment may define any non-empty subset
// of Profiles.
func Parse(r io.Reader, name string) (*Suite, error) {
	data, err := io.ReadAll(r)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var s Suite
	if err := dec.Decode(&s); err != nil {
		return nil, fmt.Errorf("%s:%s: %w", name, jsonPosition(data, err, dec.InputOffset()), err)
	}
	if len(s.Experiments) == 0 {
		return nil, fmt.Errorf("%s: no experiments", name)
	}
	var errs []error
	if s.Topology != nil {
		if err := s.Topology.Validate(); err != nil {
			errs = append(errs, fmt.Errorf("%s: topology: %w", name, err))
		}
	}
	seen := map[string]bool{}
	for i := range s.Experiments {
		// A former meter name still loads; the experiment then carries the current one.
		s.Experiments[i].Meter = meterName(s.Experiments[i].Meter)
		e := s.Experiments[i]
		if e.Name == "" || e.Name == "all" || strings.ContainsAny(e.Name, " /,"+TopologySep) {
			errs = append(errs, fmt.Errorf("%s: experiment name %q is invalid: use a word such as latency", name, e.Name))
			continue
		}
		if seen[e.Name] {
			errs = append(errs, fmt.Errorf("%s: experiment %s is defined twice", name, e.Name))
		}
		seen[e.Name] = true
		if _, ok := meters[e.Meter]; !ok {
			errs = append(errs, fmt.Errorf("%s: experiment %s: unknown meter %q: choose from %s", name, e.Name, e.Meter, strings.Join(MeterNames(), ", ")))
			continue
		}
		if err := e.checkConfigurations(); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", name, err))
		}
		if e.Placement != "" && e.Placement != PlacementApart {
			errs = append(errs, fmt.Errorf("%s: experiment %s: placement %q is unknown: give %q or leave it out", name, e.Name, e.Placement, PlacementApart))
		}
		if len(e.Profiles) == 0 {
			errs = append(errs, fmt.Errorf("%s: experiment %s has no profiles: give it at least one of %s", name, e.Name, strings.Join(Profiles, ", ")))
		}
		for p := range e.Profiles {
			if !slices.Contains(Profiles, p) {
				errs = append(errs, fmt.Errorf("%s: experiment %s: unknown profile %q: use %s", name, e.Name, p, strings.Join(Profiles, ", ")))
				continue
			}
			if _, err := e.Plan(p, Overrides{}); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", name, err))
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return &s, nil
}

// checkConfigurations checks that an experiment names configurations exactly when its meter
// takes them, and only known ones.
func (e Experiment) checkConfigurations() error {
	if !configuredMeters[e.Meter] {
		if len(e.Configurations) > 0 {
			return fmt.Errorf("experiment %s: meter %s deploys no server: drop its configurations", e.Name, e.Meter)
		}
		return nil
	}
	if len(e.Configurations) == 0 {
		return fmt.Errorf("experiment %s: meter %s needs configurations to compare, such as [\"userspace\", \"mixed\", \"ebpf\"]", e.Name, e.Meter)
	}
	seen := map[string]bool{}
	for _, c := range e.Configurations {
		if _, err := responder(c); err != nil {
			return fmt.Errorf("experiment %s: %w", e.Name, err)
		}
		if seen[c] {
			return fmt.Errorf("experiment %s: configuration %s is listed twice", e.Name, c)
		}
		seen[c] = true
	}
	return nil
}

// Names lists the suite's experiments in order.
func (s *Suite) Names() []string {
	out := make([]string, len(s.Experiments))
	for i, e := range s.Experiments {
		out[i] = e.Name
	}
	return out
}

// Select resolves the experiment names a user gave ("all" or none means every experiment that
// is not optional) in suite order.
func (s *Suite) Select(names []string) ([]Experiment, error) {
	if len(names) == 0 || len(names) == 1 && names[0] == "all" {
		var out []Experiment
		for _, e := range s.Experiments {
			if !e.Optional {
				out = append(out, e)
			}
		}
		if len(out) == 0 {
			return nil, fmt.Errorf("all selects nothing: every experiment is optional: name them, from %s", strings.Join(s.Names(), ", "))
		}
		return out, nil
	}
	var out []Experiment
	for _, n := range names {
		i := slices.IndexFunc(s.Experiments, func(e Experiment) bool { return e.Name == n })
		if i < 0 {
			return nil, fmt.Errorf("unknown experiment %q: choose from %s, or all", n, strings.Join(s.Names(), ", "))
		}
		if slices.ContainsFunc(out, func(e Experiment) bool { return e.Name == n }) {
			return nil, fmt.Errorf("experiment %q is listed twice", n)
		}
		out = append(out, s.Experiments[i])
	}
	return out, nil
}

// SelectProfile resolves names as Select does for a run under profile: "all" (or none)
// keeps only the experiments that define profile, and a named experiment without it is an
// error naming the profiles it has.
func (s *Suite) SelectProfile(names []string, profile string) ([]Experiment, error) {
	exps, err := s.Select(names)
	if err != nil {
		return nil, err
	}
	all := len(names) == 0 || len(names) == 1 && names[0] == "all"
	var out, lacking []Experiment
	for _, e := range exps {
		if _, ok := e.Profiles[profile]; ok {
			out = append(out, e)
		} else {
			lacking = append(lacking, e)
		}
	}
	if !all && len(lacking) > 0 {
		e := lacking[0]
		return nil, fmt.Errorf("experiment %s has no %s profile: use --profile %s", e.Name, profile, strings.Join(e.ProfileNames(), " or "))
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no experiment has a %s profile: choose another profile", profile)
	}
	return out, nil
}

// ProfileNames lists the profiles e defines, in the order of Profiles.
func (e Experiment) ProfileNames() []string {
	var out []string
	for _, p := range Profiles {
		if _, ok := e.Profiles[p]; ok {
			out = append(out, p)
		}
	}
	return out
}

// jsonPosition renders where a JSON decoding error happened as "line:column" (1-based):
// from a syntax or type error's offset, the end of the data for a truncated document, an
// unknown field's name, and otherwise the decoder's offset.
func jsonPosition(data []byte, err error, fallback int64) string {
	off := fallback
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syn):
		off = syn.Offset
	case errors.As(err, &typ):
		off = typ.Offset
	case errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF):
		off = int64(len(data)) + 1
	default:
		// An unknown field carries no offset: point at the field's last occurrence as a key.
		if f, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
			if k := bytes.LastIndex(data[:min(max(fallback, 0), int64(len(data)))], []byte(f)); k >= 0 {
				off = int64(k) + 1
			}
		}
	}
	// The offset counts the bytes read up to and including the offending one.
	i := min(max(off-1, 0), int64(len(data)))
	line := 1 + bytes.Count(data[:i], []byte("\n"))
	col := i - int64(bytes.LastIndexByte(data[:i], '\n'))
	return fmt.Sprintf("%d:%d", line, col)
}

// CheckProfile returns an error unless p is a known profile.
func CheckProfile(p string) error {
	if !slices.Contains(Profiles, p) {
		return fmt.Errorf("unknown profile %q: choose from %s", p, strings.Join(Profiles, ", "))
	}
	return nil
}
