package scenarios

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/edgebpf/edgebpf/bench"
	"github.com/edgebpf/edgebpf/bench/stats"
	"github.com/edgebpf/edgebpf/dataplanes"
	"github.com/edgebpf/edgebpf/netsetup"
	"github.com/edgebpf/edgebpf/reports"
)

// RunOptions selects what a run measures and where it writes.
type RunOptions struct {
	Suite       *Suite   // nil: the built-in suite
	Experiments []string // nil or ["all"]: every experiment
	DataPlanes  []string // nil: direct
	Profile     string   // default quick
	Overrides   Overrides
	Out         string   // results directory, created if missing
	Command     []string // the command line, for meta.json
	Node        netsetup.NodeConfig
	Log         *slog.Logger // progress; nil discards
}

// ErrInterrupted is returned when the run's context was cancelled; what was measured until
// then is written.
var ErrInterrupted = errors.New("run interrupted")

// job is one experiment on one data plane, or in one server configuration.
type job struct {
	plan      Plan
	dataplane string // the results' dataplane column: the data plane, or the configuration
	// configuration is set for experiments with configurations: their node runs the direct
	// data plane and the meter deploys this server configuration on it.
	configuration string
	meta          *reports.ExperimentMeta
}

// configurationDataPlane is the data plane the nodes of experiments with configurations run:
// their server configurations are what they compare.
const configurationDataPlane = "direct"

// prepare checks every option and resolves the plans without touching the system, so that a
// mistake is reported before anything is created.
func (o *RunOptions) prepare() ([]job, *reports.Meta, error) {
	if o.Suite == nil {
		o.Suite = Builtin()
	}
	if o.Profile == "" {
		o.Profile = "quick"
	}
	if err := CheckProfile(o.Profile); err != nil {
		return nil, nil, err
	}
	if len(o.DataPlanes) == 0 {
		o.DataPlanes = []string{"direct"}
	}
	for _, dp := range o.DataPlanes {
		if _, err := dataplanes.New(dp); err != nil {
			return nil, nil, err
		}
	}
	if err := o.Node.Validate(); err != nil {
		return nil, nil, err
	}
	exps, err := o.Suite.Select(o.Experiments)
	if err != nil {
		return nil, nil, err
	}
	if o.Log == nil {
		o.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	meta := &reports.Meta{
		Tool: "edgebpf", Version: reports.Version, Commit: reports.BuildCommit(), Command: o.Command,
		Host: reports.CollectHost(), Profile: o.Profile, XDPMode: "none",
		Started: time.Now().UTC(), Status: "running",
		Topology: topology(o.Node.Resolved()),
	}
	var jobs []job
	for _, e := range exps {
		plan, err := e.Plan(o.Profile, o.Overrides)
		if err != nil {
			return nil, nil, err
		}
		// An experiment with configurations runs once per configuration, not per data
		// plane: --dataplane does not select among them.
		if len(e.Configurations) > 0 {
			for _, c := range e.Configurations {
				jobs = append(jobs, job{plan: plan, dataplane: c, configuration: c})
				meta.Experiments = append(meta.Experiments, reports.ExperimentMeta{
					Name: e.Name, DataPlane: c, Meter: e.Meter, Reps: plan.Reps, Params: plan.Params, Status: "pending",
				})
			}
			continue
		}
		for _, dp := range o.DataPlanes {
			jobs = append(jobs, job{plan: plan, dataplane: dp})
			meta.Experiments = append(meta.Experiments, reports.ExperimentMeta{
				Name: e.Name, DataPlane: dp, Meter: e.Meter, Reps: plan.Reps, Params: plan.Params, Status: "pending",
			})
		}
	}
	for i := range jobs {
		jobs[i].meta = &meta.Experiments[i]
	}
	planes := slices.Clone(o.DataPlanes)
	if slices.ContainsFunc(jobs, func(j job) bool { return j.configuration != "" }) && !slices.Contains(planes, configurationDataPlane) {
		planes = append(planes, configurationDataPlane)
	}
	for _, dp := range planes {
		d, _ := dataplanes.New(dp)
		meta.DataPlanes = append(meta.DataPlanes, reports.DataPlaneMeta{Name: dp, Settings: d.Settings()})
	}
	return jobs, meta, nil
}

// Run measures every selected experiment on every selected data plane and writes the results
// directory as it goes: raw CSV after every repetition, summary.json and summary.md after
// every experiment, meta.json at every change of state. A failing experiment is recorded and
// the run goes on; a cancelled context stops the run within a second or two and keeps what
// was measured (ErrInterrupted). Everything it creates on the system is removed before it
// returns.
func Run(ctx context.Context, o RunOptions) (*reports.Meta, error) {
	jobs, meta, err := o.prepare()
	if err != nil {
		return nil, err
	}
	if err := netsetup.RequirePrivileges(); err != nil {
		return nil, err
	}
	created, err := makeOutDir(o.Out)
	if err != nil {
		return nil, err
	}
	sess, err := netsetup.NewSession("edgebpf run " + o.Out)
	if err != nil {
		if created {
			_ = os.Remove(o.Out) // only if still empty: nothing measured is ever removed
		}
		return nil, err
	}
	defer func() {
		if cerr := sess.Close(); cerr != nil {
			o.Log.Error("cleanup failed; run `edgebpf cleanup`", "err", cerr)
		}
	}()
	var tools []string
	for _, j := range jobs {
		for _, t := range meterTools[j.plan.Meter] {
			if !slices.Contains(tools, t) {
				tools = append(tools, t)
			}
		}
	}
	meta.Tools = reports.ToolVersions(tools...)
	if err := reports.WriteMeta(o.Out, meta); err != nil {
		return nil, err
	}
	start := time.Now()
	var failed []string
	interrupted := false
	for i, j := range jobs {
		if ctx.Err() != nil {
			interrupted = true
			break
		}
		o.Log.Info(fmt.Sprintf("[%d/%d] %s on %s", i+1, len(jobs), j.plan.Experiment, j.dataplane),
			"reps", j.plan.Reps, "elapsed", time.Since(start).Round(time.Second))
		now := time.Now().UTC()
		j.meta.Status, j.meta.Started = "running", &now
		_ = reports.WriteMeta(o.Out, meta)
		err := runJob(ctx, sess, o, j, func(settings map[string]string) { recordServer(meta, j.configuration, settings) })
		end := time.Now().UTC()
		j.meta.Ended = &end
		switch {
		case err == nil:
			j.meta.Status = "done"
		case ctx.Err() != nil:
			j.meta.Status, j.meta.Error = "interrupted", err.Error()
			interrupted = true
		default:
			j.meta.Status, j.meta.Error = "failed", err.Error()
			failed = append(failed, j.plan.Experiment+"/"+j.dataplane)
			o.Log.Error(fmt.Sprintf("%s on %s failed", j.plan.Experiment, j.dataplane), "err", err)
		}
		if _, serr := reports.WriteSummary(o.Out); serr != nil {
			meta.Warnings = append(meta.Warnings, "summary: "+serr.Error())
		}
		_ = reports.WriteMeta(o.Out, meta)
		if interrupted {
			break
		}
	}
	end := time.Now().UTC()
	meta.Ended = &end
	switch {
	case interrupted:
		meta.Status = "interrupted"
		for i := range meta.Experiments {
			if meta.Experiments[i].Status == "pending" {
				meta.Experiments[i].Status = "skipped"
			}
		}
	case len(failed) > 0:
		meta.Status = "failed"
	default:
		meta.Status = "done"
	}
	if err := reports.WriteMeta(o.Out, meta); err != nil {
		return meta, err
	}
	if !interrupted { // Ctrl-C should not wait for plots; `edgebpf report` builds them later
		if _, err := reports.Build(o.Out); err != nil {
			o.Log.Warn("report incomplete; rebuild it with `edgebpf report`", "err", err)
		}
	}
	o.Log.Info("run finished", "status", meta.Status, "out", o.Out, "wall", time.Since(start).Round(time.Millisecond))
	switch {
	case interrupted:
		return meta, ErrInterrupted
	case len(failed) > 0:
		return meta, fmt.Errorf("%d of %d experiments failed (%v): see %s", len(failed), len(jobs), failed, filepath.Join(o.Out, "meta.json"))
	}
	return meta, nil
}

// recordServer notes in meta.json how a configuration's server ran: its settings as a data
// plane entry "speedlimit/<configuration>" (kept apart from the data planes proper, whose
// names the configurations share), and its XDP mode in xdp_mode, which lists every mode a
// run attached with ("native", "generic", "generic,native"), or says "none".
func recordServer(meta *reports.Meta, configuration string, settings map[string]string) {
	name := "speedlimit/" + configuration
	i := slices.IndexFunc(meta.DataPlanes, func(d reports.DataPlaneMeta) bool { return d.Name == name })
	if i < 0 {
		meta.DataPlanes = append(meta.DataPlanes, reports.DataPlaneMeta{Name: name, Settings: settings})
	} else if old := meta.DataPlanes[i].Settings["xdp_mode"]; !slices.Contains(strings.Split(old, ","), settings["xdp_mode"]) {
		meta.DataPlanes[i].Settings["xdp_mode"] = old + "," + settings["xdp_mode"]
	}
	mode := settings["xdp_mode"]
	if mode == "" || mode == "none" {
		return
	}
	var modes []string
	if meta.XDPMode != "" && meta.XDPMode != "none" {
		modes = strings.Split(meta.XDPMode, ",")
	}
	if !slices.Contains(modes, mode) {
		modes = append(modes, mode)
		slices.Sort(modes)
		meta.XDPMode = strings.Join(modes, ",")
	}
}

// runJob builds a fresh node with a client and a server service, deploys the data plane and
// runs the plan's repetitions, writing the raw file after each one. record receives the
// settings of the server a configured meter deploys.
func runJob(ctx context.Context, sess *netsetup.Session, o RunOptions, j job, record func(map[string]string)) (err error) {
	node, err := netsetup.NewNode(sess, o.Node)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, node.Close()) }()
	plane := j.dataplane
	if j.configuration != "" {
		plane = configurationDataPlane
	}
	dp, err := dataplanes.New(plane)
	if err != nil {
		return err
	}
	if err := dp.Deploy(ctx, node); err != nil {
		return fmt.Errorf("deploy %s: %w", plane, err)
	}
	defer func() { err = errors.Join(err, dp.Close()) }()
	if err := node.SetLabels(plane, ""); err != nil {
		return err
	}
	var ins [2]*netsetup.Instance
	for i, name := range []string{"client", "server"} {
		if _, err := node.AddService(name); err != nil {
			return err
		}
		if ins[i], err = node.AddInstance(name); err != nil {
			return err
		}
	}
	svc, _ := node.Registry.Service("server")
	target, err := dp.Target(svc)
	if err != nil {
		return err
	}
	env := Env{Endpoints: bench.Endpoints{Client: ins[0].NS, Server: ins[1].NS, Target: target},
		Configuration: j.configuration, Node: node, Client: ins[0], Server: ins[1], Record: record}
	var all []stats.Sample
	began := time.Now()
	for rep := 1; rep <= j.plan.Reps; rep++ {
		t0 := time.Now()
		samples, err := j.plan.Run(ctx, env)
		for i := range samples {
			samples[i].Rep = rep
		}
		all = append(all, samples...)
		if werr := reports.WriteRaw(o.Out, j.plan.Experiment, j.dataplane, all); werr != nil {
			return errors.Join(err, werr)
		}
		if err != nil {
			return fmt.Errorf("rep %d: %w", rep, err)
		}
		left := time.Since(began) / time.Duration(rep) * time.Duration(j.plan.Reps-rep)
		o.Log.Info(fmt.Sprintf("  %s/%s rep %d/%d", j.plan.Experiment, j.dataplane, rep, j.plan.Reps),
			"samples", len(samples), "took", time.Since(t0).Round(time.Millisecond), "median", medians(samples),
			"left", left.Round(time.Second))
	}
	return nil
}

// medians gives a one-line glimpse of a repetition for the progress log.
func medians(samples []stats.Sample) string {
	groups, err := stats.GroupSamples(samples)
	if err != nil || len(groups) == 0 {
		return ""
	}
	g := groups[0]
	return reports.FormatValue(stats.Summarize(g.Values).Median, g.Metric.Unit) + " " + g.Metric.Name
}

// makeOutDir creates the results directory if needed and checks it is writable. created
// says whether it did not exist before.
func makeOutDir(dir string) (created bool, err error) {
	if dir == "" {
		return false, errors.New("no results directory: give --out DIR")
	}
	if fi, err := os.Stat(dir); err == nil && !fi.IsDir() {
		return false, fmt.Errorf("results directory %s is a file: give a directory", dir)
	} else if errors.Is(err, os.ErrNotExist) {
		created = true
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return false, fmt.Errorf("results directory %s cannot be created: %w", dir, err)
	}
	probe, err := os.CreateTemp(dir, ".edgebpf-probe-*")
	if err != nil {
		if created {
			_ = os.Remove(dir)
		}
		return false, fmt.Errorf("results directory %s is not writable: %w", dir, err)
	}
	probe.Close()
	return created, os.Remove(probe.Name())
}

// topology describes the node every job builds, for meta.json.
func topology(n netsetup.NodeConfig) map[string]any {
	return map[string]any{"node": n.Name, "subnet": n.Subnet.String(), "service_range": n.ServiceRange.String(),
		"mtu": n.MTU, "services": []string{"client", "server"}}
}
