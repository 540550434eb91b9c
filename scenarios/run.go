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
	"github.com/edgebpf/edgebpf/dataplanes"
	"github.com/edgebpf/edgebpf/dataplanes/ebpf/manager"
	"github.com/edgebpf/edgebpf/internal/cpupin"
	"github.com/edgebpf/edgebpf/internal/features"
	"github.com/edgebpf/edgebpf/internal/host"
	"github.com/edgebpf/edgebpf/internal/host/probe"
	"github.com/edgebpf/edgebpf/netsetup"
	"github.com/edgebpf/edgebpf/reports"
	"github.com/edgebpf/edgebpf/stats"
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
	// CPUs pins the threads of the client, server and proxy roles (package cpupin); nil
	// pins nothing.
	CPUs cpupin.Plan
	// Warmup runs each (experiment, data plane) once with the experiment's smoke parameters
	// before its first repetition, unrecorded. nil: on for quick and full, off for smoke.
	Warmup *bool
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
	warmup        *Plan // nil: no warm-up
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
	if err := o.CPUs.Validate(); err != nil {
		return nil, nil, err
	}
	warm := o.Profile != "smoke"
	if o.Warmup != nil {
		warm = *o.Warmup
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
		Host: host.Collect(), Profile: o.Profile, XDPMode: "none",
		Started: time.Now().UTC(), Status: "running",
		Topology: topology(o.Node.Resolved()),
		Schedule: "interleaved: repetition r of every data plane (or configuration) of an experiment runs before repetition r+1 of any, each on a node of its own kept for the whole experiment",
		Warmup:   &reports.WarmupMeta{Enabled: warm},
	}
	if warm {
		meta.Warmup.Profile = "smoke"
	}
	if p := o.CPUs.Settings(); len(p) > 0 {
		meta.Pinning, meta.PinningNote = p, pinningNote
	}
	var jobs []job
	for _, e := range exps {
		plan, err := e.Plan(o.Profile, o.Overrides)
		if err != nil {
			return nil, nil, err
		}
		var warmup *Plan
		if warm {
			w, err := e.Plan("smoke", Overrides{Reps: 1})
			if err != nil {
				return nil, nil, fmt.Errorf("warm-up: %w", err)
			}
			warmup = &w
		}
		// An experiment with configurations runs once per configuration, not per data
		// plane: --dataplane does not select among them.
		if len(e.Configurations) > 0 {
			for _, c := range e.Configurations {
				jobs = append(jobs, job{plan: plan, dataplane: c, configuration: c, warmup: warmup})
				meta.Experiments = append(meta.Experiments, reports.ExperimentMeta{
					Name: e.Name, DataPlane: c, Meter: e.Meter, Reps: plan.Reps, Params: plan.Params, Status: "pending",
				})
			}
			continue
		}
		for _, dp := range o.DataPlanes {
			jobs = append(jobs, job{plan: plan, dataplane: dp, warmup: warmup})
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
// every experiment, meta.json at every change of state. It first probes the kernel's
// features and skips, with the reason, the jobs whose feature is missing; it notes in
// meta.json and on the log what makes numbers less trustworthy (CPU governor, SMT and turbo
// state, other load). Within an experiment the repetitions are interleaved across data
// planes (or configurations): repetition r of every one runs before repetition r+1 of any,
// each on a node of its own that lives for the whole experiment, after one unrecorded
// warm-up run each when warm-up is on. A failing job is recorded and the run goes on; a
// cancelled context stops the run within a second or two and keeps what was measured
// (ErrInterrupted). Everything it creates on the system is removed before it returns.
func Run(ctx context.Context, o RunOptions) (*reports.Meta, error) {
	jobs, meta, err := o.prepare()
	if err != nil {
		return nil, err
	}
	if err := netsetup.RequirePrivileges(); err != nil {
		return nil, err
	}
	if o.Overrides.BPFStats {
		st, err := manager.CountRunTime() // held for the whole run
		if err != nil {
			return nil, fmt.Errorf("bpf statistics: %w", err)
		}
		defer st.Close()
		meta.BPFStats = true
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
	r := &runner{o: o, sess: sess, meta: meta, total: len(jobs), start: time.Now()}
	feats := probeFeatures(sess)
	meta.Features = featureMeta(feats)
	for i := range jobs {
		if reason := jobs[i].missing(feats); reason != "" {
			jobs[i].meta.Status, jobs[i].meta.SkipReason = "skipped", reason
			o.Log.Warn(fmt.Sprintf("skipping %s on %s: %s", jobs[i].plan.Experiment, jobs[i].dataplane, reason))
		}
	}
	load, warnings := host.Hygiene(ctx, meta.Host)
	meta.StartLoad = load
	for _, w := range warnings {
		o.Log.Warn(w)
	}
	meta.Warnings = append(meta.Warnings, warnings...)
	var tools []string
	for _, j := range jobs {
		for _, t := range meterTools[j.plan.Meter] {
			if !slices.Contains(tools, t) {
				tools = append(tools, t)
			}
		}
	}
	meta.Tools = host.ToolVersions(tools...)
	if err := reports.WriteMeta(o.Out, meta); err != nil {
		return nil, err
	}
	ctx = cpupin.WithPlan(ctx, o.CPUs)
	interrupted := false
	for _, g := range groupJobs(jobs) {
		if ctx.Err() != nil {
			interrupted = true
			break
		}
		if r.experiment(ctx, g) {
			interrupted = true
		}
		if _, serr := reports.WriteSummary(o.Out); serr != nil {
			meta.Warnings = append(meta.Warnings, "summary: "+serr.Error())
		}
		_ = reports.WriteMeta(o.Out, meta)
		if interrupted {
			break
		}
	}
	if n := cpupin.FailuresIn(ctx); n > 0 {
		meta.Warnings = append(meta.Warnings, fmt.Sprintf("%d threads could not be pinned and ran on any CPU", n))
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
	case len(r.failed) > 0:
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
	o.Log.Info("run finished", "status", meta.Status, "out", o.Out, "wall", time.Since(r.start).Round(time.Millisecond))
	switch {
	case interrupted:
		return meta, ErrInterrupted
	case len(r.failed) > 0:
		return meta, fmt.Errorf("%d of %d experiments failed (%v): see %s", len(r.failed), len(jobs), r.failed, filepath.Join(o.Out, "meta.json"))
	}
	return meta, nil
}

// probeFeatures is probe.Features; tests replace it to pretend a feature is missing.
var probeFeatures = probe.Features

func featureMeta(r features.Report) []reports.FeatureMeta {
	out := make([]reports.FeatureMeta, len(r.Features))
	for i, f := range r.Features {
		out[i] = reports.FeatureMeta{Name: string(f.Name), OK: f.OK, Detail: f.Detail}
	}
	return out
}

// groupJobs splits the jobs into experiments: runs of consecutive jobs of one experiment.
func groupJobs(jobs []job) [][]*job {
	var out [][]*job
	for i := range jobs {
		if i == 0 || jobs[i].plan.Experiment != jobs[i-1].plan.Experiment {
			out = append(out, nil)
		}
		out[len(out)-1] = append(out[len(out)-1], &jobs[i])
	}
	return out
}

// step is one run of a job's meter: its warm-up (rep 0) or a recorded repetition.
type step struct {
	job int // index in the experiment's jobs
	rep int
}

// schedule orders an experiment's runs: every job's warm-up first if warm is set, then
// repetition r of every job before repetition r+1 of any (A B C A B C ...), so that drift
// of the machine over time hits every data plane alike.
func schedule(reps []int, warm bool) []step {
	var out []step
	if warm {
		for j := range reps {
			out = append(out, step{j, 0})
		}
	}
	for r := 1; r <= slices.Max(append([]int{0}, reps...)); r++ {
		for j, n := range reps {
			if r <= n {
				out = append(out, step{j, r})
			}
		}
	}
	return out
}

// runner holds what the jobs of one run share.
type runner struct {
	o      RunOptions
	sess   *netsetup.Session
	meta   *reports.Meta
	total  int // jobs in the run, for the progress log
	n      int // jobs started so far
	start  time.Time
	failed []string
}

// live is a job whose node is up.
type live struct {
	j       *job
	env     Env
	close   func() error
	samples []stats.Sample
	started bool // a warm-up or repetition began
	err     error
}

// experiment runs one experiment's jobs interleaved and reports whether the run was
// interrupted.
func (r *runner) experiment(ctx context.Context, g []*job) (interrupted bool) {
	var lv []*live
	for _, j := range g {
		if j.meta.Status == "skipped" {
			continue
		}
		r.n++
		r.o.Log.Info(fmt.Sprintf("[%d/%d] %s on %s", r.n, r.total, j.plan.Experiment, j.dataplane),
			"reps", j.plan.Reps, "elapsed", time.Since(r.start).Round(time.Second))
		now := time.Now().UTC()
		j.meta.Status, j.meta.Started = "running", &now
		_ = reports.WriteMeta(r.o.Out, r.meta)
		l := &live{j: j}
		l.env, l.close, l.err = r.setup(ctx, j)
		if l.err != nil {
			r.finish(l)
			continue
		}
		lv = append(lv, l)
	}
	reps := make([]int, len(lv))
	warm := false
	for i, l := range lv {
		reps[i] = l.j.plan.Reps
		warm = warm || l.j.warmup != nil
	}
	began := time.Now()
	done, total := 0, 0
	for _, s := range schedule(reps, warm) {
		if s.rep > 0 {
			total++
		}
	}
	for _, s := range schedule(reps, warm) {
		l := lv[s.job]
		if l.err != nil {
			continue
		}
		if ctx.Err() != nil {
			break
		}
		l.started = true
		if s.rep == 0 {
			if l.j.warmup != nil {
				r.warmup(ctx, l)
			}
			continue
		}
		before := r.programRuns(l)
		t0 := time.Now()
		samples, err := l.j.plan.Run(ctx, l.env)
		t1 := time.Now()
		samples = append(samples, r.programCost(l, before, t1.Sub(t0))...)
		for i := range samples {
			samples[i].Rep = s.rep
		}
		l.samples = append(l.samples, samples...)
		l.j.meta.RepTimes = append(l.j.meta.RepTimes, reports.RepMeta{Rep: s.rep, Started: t0.UTC(), Ended: t1.UTC(), Samples: len(samples)})
		if werr := reports.WriteRaw(r.o.Out, l.j.plan.Experiment, l.j.dataplane, l.samples); werr != nil {
			l.err = errors.Join(err, werr)
			continue
		}
		if err != nil {
			l.err = fmt.Errorf("rep %d: %w", s.rep, err)
			continue
		}
		done++
		left := time.Since(began) / time.Duration(done) * time.Duration(total-done)
		r.o.Log.Info(fmt.Sprintf("  %s/%s rep %d/%d", l.j.plan.Experiment, l.j.dataplane, s.rep, l.j.plan.Reps),
			"samples", len(samples), "took", t1.Sub(t0).Round(time.Millisecond), "median", medians(samples),
			"left", left.Round(time.Second))
	}
	for _, l := range lv {
		l.err = errors.Join(l.err, l.close())
		if ctx.Err() != nil && l.err == nil && len(l.j.meta.RepTimes) < l.j.plan.Reps {
			l.err = ctx.Err()
		}
		r.finish(l)
	}
	return ctx.Err() != nil
}

// programRuns reads the run statistics of the job's BPF programs when the run records them;
// nil otherwise.
func (r *runner) programRuns(l *live) []manager.ProgramRun {
	if !r.o.Overrides.BPFStats || l.env.programs == nil {
		return nil
	}
	runs, err := l.env.programs.ProgramRuns()
	if err != nil {
		l.j.meta.Warnings = append(l.j.meta.Warnings, "bpf statistics: "+err.Error())
		return nil
	}
	return runs
}

// programCost returns one bpf_ns_per_pkt:<program> sample per BPF program that ran during a
// repetition: its mean run time per packet over the repetition (took long), from the kernel's
// counts before and after it.
func (r *runner) programCost(l *live, before []manager.ProgramRun, took time.Duration) []stats.Sample {
	if before == nil {
		return nil
	}
	after := r.programRuns(l)
	var out []stats.Sample
	for _, a := range after {
		i := slices.IndexFunc(before, func(b manager.ProgramRun) bool { return b.Name == a.Name })
		if i < 0 || a.Runs <= before[i].Runs {
			continue
		}
		ns := float64(a.Runtime-before[i].Runtime) / float64(a.Runs-before[i].Runs)
		out = append(out, stats.Sample{T: took.Seconds(), Metric: programCostMetric(a.Name), Value: ns})
	}
	return out
}

// warmup runs a job's warm-up plan once and throws its samples away. A failing warm-up is
// noted; the repetitions still run and fail on their own if the job is broken.
func (r *runner) warmup(ctx context.Context, l *live) {
	t0 := time.Now()
	samples, err := l.j.warmup.Run(ctx, l.env)
	t1 := time.Now()
	l.j.meta.Warmup = &reports.RepMeta{Rep: 0, Started: t0.UTC(), Ended: t1.UTC(), Samples: len(samples)}
	if err != nil && ctx.Err() == nil {
		w := "warm-up failed: " + err.Error()
		l.j.meta.Warnings = append(l.j.meta.Warnings, w)
		r.o.Log.Warn(fmt.Sprintf("%s on %s: %s", l.j.plan.Experiment, l.j.dataplane, w))
	}
	r.o.Log.Info(fmt.Sprintf("  %s/%s warm-up (not recorded)", l.j.plan.Experiment, l.j.dataplane),
		"took", t1.Sub(t0).Round(time.Millisecond))
}

// finish records a job's outcome.
func (r *runner) finish(l *live) {
	j := l.j
	end := time.Now().UTC()
	j.meta.Ended = &end
	switch {
	case l.err == nil:
		j.meta.Status = "done"
	case errors.Is(l.err, context.Canceled) && !l.started:
		j.meta.Status = "skipped"
	case errors.Is(l.err, context.Canceled):
		j.meta.Status, j.meta.Error = "interrupted", l.err.Error()
	default:
		j.meta.Status, j.meta.Error = "failed", l.err.Error()
		r.failed = append(r.failed, j.plan.Experiment+"/"+j.dataplane)
		r.o.Log.Error(fmt.Sprintf("%s on %s failed", j.plan.Experiment, j.dataplane), "err", l.err)
	}
}

// setup builds a job's node — named after its data plane or configuration, so the nodes of
// one experiment live side by side — with a client and a server service, deploys the data
// plane, and returns the meter's environment and what removes the node.
func (r *runner) setup(ctx context.Context, j *job) (env Env, closeAll func() error, err error) {
	cfg := r.o.Node
	cfg.Name = cfg.Resolved().Name + "-" + j.dataplane
	node, err := netsetup.NewNode(r.sess, cfg)
	if err != nil {
		return Env{}, nil, err
	}
	var dp dataplanes.DataPlane
	closeAll = func() error {
		var err error
		if dp != nil {
			err = dp.Close()
		}
		return errors.Join(err, node.Close())
	}
	defer func() {
		if err != nil {
			err = errors.Join(err, closeAll())
		}
	}()
	plane := j.dataplane
	if j.configuration != "" {
		plane = configurationDataPlane
	}
	d, err := dataplanes.New(plane)
	if err != nil {
		return Env{}, nil, err
	}
	if err := d.Deploy(ctx, node); err != nil {
		return Env{}, nil, fmt.Errorf("deploy %s: %w", plane, err)
	}
	dp = d
	if err := node.SetLabels(plane, ""); err != nil {
		return Env{}, nil, err
	}
	var ins [2]*netsetup.Instance
	for i, name := range []string{"client", "server"} {
		if _, err := node.AddService(name); err != nil {
			return Env{}, nil, err
		}
		if ins[i], err = node.AddInstance(name); err != nil {
			return Env{}, nil, err
		}
	}
	svc, _ := node.Registry.Service("server")
	target, err := dp.Target(svc)
	if err != nil {
		return Env{}, nil, err
	}
	record := func(settings map[string]string) { recordServer(r.meta, j.configuration, settings) }
	programs, _ := dp.(dataplanes.ProgramRunner)
	return Env{Endpoints: bench.Endpoints{Client: ins[0].NS, Server: ins[1].NS, Target: target},
		Configuration: j.configuration, Node: node, Client: ins[0], Server: ins[1], Record: record,
		programs: programs}, closeAll, nil
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
	return map[string]any{"node": n.Name + "-<data plane or configuration>", "subnet": n.Subnet.String(), "service_range": n.ServiceRange.String(),
		"mtu": n.MTU, "services": []string{"client", "server"}}
}
