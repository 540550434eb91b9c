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

	"github.com/edgebpf/edgebpf/dataplanes"
	"github.com/edgebpf/edgebpf/dataplanes/ebpf/manager"
	"github.com/edgebpf/edgebpf/internal/cpupin"
	"github.com/edgebpf/edgebpf/internal/features"
	"github.com/edgebpf/edgebpf/internal/host"
	"github.com/edgebpf/edgebpf/internal/host/probe"
	"github.com/edgebpf/edgebpf/netsetup"
	"github.com/edgebpf/edgebpf/reports"
	"github.com/edgebpf/edgebpf/stats"
	"github.com/edgebpf/edgebpf/subject"
	"github.com/edgebpf/edgebpf/subjects"
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
	// Topology says where the services live: same-node (the default) or cross-node, a
	// cluster per job. Zero fields take the suite's (Suite.Topology).
	Topology Topology
	// Warmup runs each (experiment, data plane) once with the experiment's smoke parameters
	// before its first repetition, unrecorded. nil: on for quick and full, off for smoke.
	Warmup *bool
	// Chain is how data planes with an eBPF manager chain its modules; "": their default.
	Chain manager.Chain
}

// ErrInterrupted is returned when the run's context was cancelled; what was measured until
// then is written.
var ErrInterrupted = errors.New("run interrupted")

// job is one experiment on one subject: a data plane, or a responder configuration deployed
// on a node that runs the direct data plane.
type job struct {
	plan    Plan
	subject subject.Spec    // what the job measures; its name fills the results' dataplane column
	plane   dataplanes.Spec // the node's data plane: the subject itself, or direct under a responder
	// planes are the data planes of a cross-node job's workers (worker i runs planes[i]);
	// nil on one node.
	planes []dataplanes.Spec
	meta   *reports.ExperimentMeta
	warmup *Plan  // nil: no warm-up
	skip   string // why the job cannot run, known before the machine is probed; "" if it can
}

// name is the job's subject as the results name it.
func (j *job) name() string { return j.subject.Name }

// responderPlane is the data plane of the nodes a responder configuration is deployed on:
// the configurations are what those experiments compare.
const responderPlane = "direct"

// Check checks every option and resolves the plans as Run does, without touching the
// system: an error is a mistake in the options (an unknown experiment or data plane, a
// profile an experiment lacks, a bad MTU or parameter).
func (o RunOptions) Check() error {
	_, _, err := o.prepare()
	return err
}

// prepare checks every option and resolves the plans without touching the system, so that a
// mistake is reported before anything is created.
func (o *RunOptions) prepare() ([]job, *reports.Meta, error) {
	warm, err := o.check()
	if err != nil {
		return nil, nil, err
	}
	exps, err := o.Suite.SelectProfile(o.Experiments, o.Profile)
	if err != nil {
		return nil, nil, err
	}
	if err := o.Overrides.checkOverrides(o.Suite, exps); err != nil {
		return nil, nil, err
	}
	meta := o.newMeta(warm)
	var jobs []job
	for _, e := range exps {
		js, err := o.jobs(e, warm)
		if err != nil {
			return nil, nil, err
		}
		for _, j := range js {
			meta.Experiments = append(meta.Experiments, reports.ExperimentMeta{
				Name: j.plan.Experiment, DataPlane: j.name(), Meter: e.Meter, Reps: j.plan.Reps, Params: j.plan.Params, Status: "pending",
			})
		}
		jobs = append(jobs, js...)
	}
	for i := range jobs {
		jobs[i].meta = &meta.Experiments[i]
		planMeta(meta, &jobs[i])
	}
	return jobs, meta, nil
}

// check fills the options' defaults and checks them; it says whether warm-up is on.
func (o *RunOptions) check() (warm bool, err error) {
	if o.Suite == nil {
		o.Suite = Builtin()
	}
	if o.Profile == "" {
		o.Profile = "quick"
	}
	if err := CheckProfile(o.Profile); err != nil {
		return false, err
	}
	if len(o.DataPlanes) == 0 {
		o.DataPlanes = []string{"direct"}
	}
	o.Topology = o.Topology.over(o.Suite.Topology)
	if err := o.Topology.Validate(); err != nil {
		return false, err
	}
	o.Topology = o.Topology.resolved()
	for _, dp := range o.DataPlanes {
		if _, _, err := lookupSubject(dp, o.Topology); err != nil {
			return false, err
		}
	}
	if err := errors.Join(o.Node.Validate(), o.CPUs.Validate()); err != nil {
		return false, err
	}
	if o.Log == nil {
		o.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	warm = o.Profile != "smoke"
	if o.Warmup != nil {
		warm = *o.Warmup
	}
	return warm, nil
}

// newMeta starts the run's meta.json.
func (o *RunOptions) newMeta(warm bool) *reports.Meta {
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
	if o.Topology.CrossNode() {
		meta.Topology = o.Topology.meta(o.Node)
		meta.Schedule = strings.Replace(meta.Schedule, "each on a node of its own", "each on a cluster of its own", 1)
	}
	if p := o.CPUs.Settings(); len(p) > 0 {
		meta.Pinning, meta.PinningNote = p, pinningNote
	}
	return meta
}

// jobs resolves one experiment into a job per subject and topology (same-node jobs first).
func (o *RunOptions) jobs(e Experiment, warm bool) ([]job, error) {
	var out []job
	for _, kind := range o.Topology.Kinds() {
		js, err := o.jobsIn(e, warm, o.Topology.as(kind))
		if err != nil {
			return nil, err
		}
		out = append(out, js...)
	}
	return out, nil
}

// jobsIn resolves one experiment on one topology into a job per subject: per responder
// configuration for an experiment that lists configurations (--dataplane does not select
// among them), per selected data plane otherwise. A mixed subject has no same-node job.
func (o *RunOptions) jobsIn(e Experiment, warm bool, t Topology) ([]job, error) {
	plan, err := e.Plan(o.Profile, o.Overrides)
	if err != nil {
		return nil, err
	}
	var warmup *Plan
	if warm {
		// The cheapest profile the experiment has: smoke, where it defines one.
		w, err := e.Plan(e.ProfileNames()[0], Overrides{Reps: 1})
		if err != nil {
			return nil, fmt.Errorf("warm-up: %w", err)
		}
		warmup = &w
	}
	plan.Experiment += t.suffix()
	if t.CrossNode() && !crossMeters[e.Meter] {
		return o.sameNodeOnly(e, plan, warmup)
	}
	if len(e.Configurations) > 0 {
		return responderJobs(e, plan, warmup, "")
	}
	var out []job
	for _, dp := range o.DataPlanes {
		if !t.CrossNode() && dataplanes.IsMixed(dp) {
			continue
		}
		spec, planes, err := lookupSubject(dp, t)
		if err != nil {
			return nil, err
		}
		j := job{plan: plan, subject: spec.Spec, plane: withChain(spec, o.Chain), warmup: warmup}
		if t.CrossNode() {
			for i := range planes {
				planes[i] = withChain(planes[i], o.Chain)
			}
			j.planes, j.skip = planes, crossReason(planes)
		}
		out = append(out, j)
	}
	return out, nil
}

// withChain makes spec's data planes chain eBPF modules in mode c, where they have a manager.
// responderJobs is a job per configuration of a responder experiment, each on a node with
// the responder's data plane; skip, if set, is why they do not run.
func responderJobs(e Experiment, plan Plan, warmup *Plan, skip string) ([]job, error) {
	direct, err := registry().Lookup(responderPlane)
	if err != nil {
		return nil, err
	}
	var out []job
	for _, c := range e.Configurations {
		spec, err := responder(c)
		if err != nil {
			return nil, fmt.Errorf("experiment %s: %w", e.Name, err)
		}
		out = append(out, job{plan: plan, subject: spec, plane: direct, warmup: warmup, skip: skip})
	}
	return out, nil
}

func withChain(spec dataplanes.Spec, c manager.Chain) dataplanes.Spec {
	if c == "" {
		return spec
	}
	orig := spec.New
	spec.New = func() dataplanes.DataPlane {
		dp := orig()
		if cs, ok := dp.(interface{ SetChain(manager.Chain) }); ok {
			cs.SetChain(c)
		}
		return dp
	}
	return spec
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
	out, err := reserveSpace(o.Out)
	if err != nil {
		if created {
			_ = os.Remove(o.Out) // only if still empty: nothing measured is ever removed
		}
		return nil, err
	}
	defer out.release()
	sess, err := netsetup.NewSession("edgebpf run " + o.Out)
	if err != nil {
		out.release()
		if created {
			_ = os.Remove(o.Out)
		}
		return nil, err
	}
	if err := sess.SetResults(o.Out); err != nil { // cleanup marks the run killed if it dies
		o.Log.Warn("the session record does not name the results directory", "err", err)
	}
	defer func() {
		if cerr := sess.Close(); cerr != nil {
			o.Log.Error("cleanup failed; run `edgebpf cleanup`", "err", cerr)
		}
	}()
	r := &runner{o: o, sess: sess, out: out, meta: meta, total: len(jobs), start: time.Now()}
	if err := r.begin(ctx, jobs); err != nil {
		return nil, err
	}
	ctx = cpupin.WithPlan(ctx, o.CPUs)
	interrupted := r.experiments(ctx, jobs)
	return r.end(ctx, interrupted, len(jobs))
}

// begin skips the jobs the machine cannot run, samples the machine's load and writes the
// first meta.json.
func (r *runner) begin(ctx context.Context, jobs []job) error {
	meta := r.meta
	feats := probeFeatures(r.sess)
	meta.Features = featureMeta(feats)
	for i := range jobs {
		if reason := jobs[i].reason(feats); reason != "" {
			jobs[i].meta.Status, jobs[i].meta.SkipReason = "skipped", reason
			r.o.Log.Warn(fmt.Sprintf("skipping %s on %s: %s", jobs[i].plan.Experiment, jobs[i].name(), reason))
		}
	}
	load, warnings := host.Hygiene(ctx, meta.Host)
	meta.StartLoad = load
	for _, w := range warnings {
		r.o.Log.Warn(w)
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
	return r.writeMeta()
}

// experiments runs the jobs experiment by experiment, writing the summaries after each, and
// reports whether the run was interrupted.
func (r *runner) experiments(ctx context.Context, jobs []job) (interrupted bool) {
	for _, g := range groupJobs(jobs) {
		if ctx.Err() != nil {
			return true
		}
		interrupted = r.experiment(ctx, g)
		if _, serr := reports.WriteSummary(r.o.Out, subjects.All()); serr != nil {
			r.meta.Warnings = append(r.meta.Warnings, "summary: "+serr.Error())
		}
		r.writeMeta()
		if interrupted {
			return true
		}
	}
	return false
}

// end writes the run's final state and report, and returns the run's outcome.
func (r *runner) end(ctx context.Context, interrupted bool, jobs int) (*reports.Meta, error) {
	meta, o := r.meta, r.o
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
	if err := r.writeMeta(); err != nil {
		return meta, fmt.Errorf("meta.json in %s could not be written, it shows an older state: %w", o.Out, err)
	}
	var missing []string
	if !interrupted { // Ctrl-C should not wait for plots; `edgebpf report` builds them later
		rep, err := reports.Build(o.Out, subjects.All())
		if missing = r.out.missing(rep); len(missing) > 0 {
			meta.Status = "incomplete"
			meta.Warnings = append(meta.Warnings, fmt.Sprintf("could not write %s: %v", strings.Join(missing, ", "), err))
			if merr := r.writeMeta(); merr != nil {
				return meta, fmt.Errorf("meta.json in %s could not be written, it shows an older state: %w", o.Out, merr)
			}
		} else if err != nil {
			o.Log.Warn("report incomplete; rebuild it with `edgebpf report`", "err", err)
		}
	}
	o.Log.Info("run finished", "status", meta.Status, "out", o.Out, "wall", time.Since(r.start).Round(time.Millisecond))
	switch {
	case len(missing) > 0:
		return meta, fmt.Errorf("results in %s are incomplete: %d files could not be written (%s); free space and run `edgebpf report %s`",
			o.Out, len(missing), strings.Join(missing[:min(len(missing), 5)], ", "), o.Out)
	case interrupted:
		return meta, ErrInterrupted
	case len(r.failed) > 0:
		return meta, fmt.Errorf("%d of %d experiments failed (%v): see %s", len(r.failed), jobs, r.failed, filepath.Join(o.Out, "meta.json"))
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

// groupJobs splits the jobs into experiments: runs of consecutive jobs of one experiment,
// on either topology (latency and latency@cross-node interleave).
func groupJobs(jobs []job) [][]*job {
	var out [][]*job
	for i := range jobs {
		if i == 0 || baseExperiment(jobs[i].plan.Experiment) != baseExperiment(jobs[i-1].plan.Experiment) {
			out = append(out, nil)
		}
		out[len(out)-1] = append(out[len(out)-1], &jobs[i])
	}
	return out
}

// baseExperiment is an experiment's name without its topology.
func baseExperiment(name string) string {
	base, _, _ := strings.Cut(name, TopologySep)
	return base
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
	out    *outDir
	meta   *reports.Meta
	total  int // jobs in the run, for the progress log
	n      int // jobs started so far
	start  time.Time
	failed []string
}

// live is a job whose node is up.
type live struct {
	j       *job
	dep     *deployment
	samples []stats.Sample
	started bool // a warm-up or repetition began
	err     error
}

// experiment runs one experiment's jobs interleaved and reports whether the run was
// interrupted.
func (r *runner) experiment(ctx context.Context, g []*job) (interrupted bool) {
	ctx, placed := r.placement(ctx, g)
	defer placed()
	var lv []*live
	for _, j := range g {
		if j.meta.Status == "skipped" {
			continue
		}
		r.n++
		r.o.Log.Info(fmt.Sprintf("[%d/%d] %s on %s", r.n, r.total, j.plan.Experiment, j.name()),
			"reps", j.plan.Reps, "elapsed", time.Since(r.start).Round(time.Second))
		now := time.Now().UTC()
		j.meta.Status, j.meta.Started = "running", &now
		r.writeMeta()
		l := &live{j: j}
		l.dep, l.err = r.deploy(ctx, j)
		if l.err != nil {
			r.finish(l)
			continue
		}
		lv = append(lv, l)
	}
	r.interleave(ctx, lv)
	for _, l := range lv {
		l.err = errors.Join(l.err, l.dep.close())
		if ctx.Err() != nil && l.err == nil && len(l.j.meta.RepTimes) < l.j.plan.Reps {
			l.err = ctx.Err()
		}
		r.finish(l)
	}
	return ctx.Err() != nil
}

// interleave runs the live jobs' warm-ups and repetitions in schedule order until done or
// cancelled.
func (r *runner) interleave(ctx context.Context, lv []*live) {
	reps := make([]int, len(lv))
	warm := false
	for i, l := range lv {
		reps[i] = l.j.plan.Reps
		warm = warm || l.j.warmup != nil
	}
	steps := schedule(reps, warm)
	began := time.Now()
	done, total := 0, 0
	for _, s := range steps {
		if s.rep > 0 {
			total++
		}
	}
	for _, s := range steps {
		l := lv[s.job]
		if l.err != nil {
			continue
		}
		if ctx.Err() != nil {
			return
		}
		l.started = true
		if s.rep == 0 {
			if l.j.warmup != nil {
				r.warmup(ctx, l)
			}
			continue
		}
		samples, took, ok := r.repetition(ctx, l, s.rep)
		if ok {
			done++
			left := time.Since(began) / time.Duration(done) * time.Duration(total-done)
			r.o.Log.Info(fmt.Sprintf("  %s/%s rep %d/%d", l.j.plan.Experiment, l.j.name(), s.rep, l.j.plan.Reps),
				"samples", len(samples), "took", took.Round(time.Millisecond), "median", medians(samples),
				"left", left.Round(time.Second))
		}
	}
}

// repetition runs one recorded repetition of a job and writes its raw file; it returns the
// repetition's samples, how long it took and whether it succeeded.
func (r *runner) repetition(ctx context.Context, l *live, rep int) ([]stats.Sample, time.Duration, bool) {
	t0 := time.Now()
	samples, err := r.measure(ctx, l, l.j.plan)
	t1 := time.Now()
	for i := range samples {
		samples[i].Rep = rep
	}
	l.samples = append(l.samples, samples...)
	l.j.meta.RepTimes = append(l.j.meta.RepTimes, reports.RepMeta{Rep: rep, Started: t0.UTC(), Ended: t1.UTC(), Samples: len(samples)})
	if werr := reports.WriteRaw(r.o.Out, l.j.plan.Experiment, l.j.name(), l.samples); werr != nil {
		l.err = errors.Join(err, werr)
		return nil, 0, false
	}
	if err != nil {
		l.err = fmt.Errorf("rep %d: %w", rep, err)
		return nil, 0, false
	}
	return samples, t1.Sub(t0), true
}

// measure runs a plan's meter once against the job's deployed subject: it starts what the
// subject runs per repetition (a fresh responder), reads its BPF programs' run statistics
// before and after when the run records them, runs the meter and stops the subject again.
func (r *runner) measure(ctx context.Context, l *live, p Plan) (samples []stats.Sample, err error) {
	count := r.o.Overrides.BPFStats || p.bpfStats()
	if count && !r.o.Overrides.BPFStats && l.dep.perRep != nil {
		st, err := manager.CountRunTime() // only while the meter runs, as the scenario asks
		if err != nil {
			return nil, fmt.Errorf("bpf statistics: %w", err)
		}
		defer st.Close()
	}
	if err := l.dep.start(ctx); err != nil {
		return nil, err
	}
	if l.dep.perRep != nil { // a fresh server: its settings (the XDP mode) are known now
		r.recordSettings(l.dep)
	}
	defer func() { err = errors.Join(err, l.dep.stop()) }()
	var before []subject.ProgramRun
	if count {
		before = r.programRuns(l)
	}
	t0 := time.Now()
	err = watch(ctx, l.dep.alive, func(ctx context.Context) error {
		var err error
		samples, err = p.Run(ctx, l.dep.env)
		return err
	})
	return append(samples, r.programCost(l, before, time.Since(t0))...), err
}

// programRuns reads the run statistics of the job's BPF programs, or nil if it has none.
func (r *runner) programRuns(l *live) []subject.ProgramRun {
	if l.dep.programs == nil {
		return nil
	}
	runs, err := l.dep.programs.ProgramRuns()
	if err != nil {
		l.j.meta.Warnings = append(l.j.meta.Warnings, "bpf statistics: "+err.Error())
		return nil
	}
	return runs
}

// programCost returns one bpf_ns_per_pkt:<program> sample per BPF program that ran during a
// repetition: its mean run time per packet over the repetition (took long), from the kernel's
// counts before and after it.
func (r *runner) programCost(l *live, before []subject.ProgramRun, took time.Duration) []stats.Sample {
	if before == nil {
		return nil
	}
	var out []stats.Sample
	for _, a := range r.programRuns(l) {
		i := slices.IndexFunc(before, func(b subject.ProgramRun) bool { return b.Name == a.Name })
		if i < 0 || a.Runs <= before[i].Runs {
			continue
		}
		ns := float64(a.Runtime-before[i].Runtime) / float64(a.Runs-before[i].Runs)
		out = append(out, stats.Sample{T: took.Seconds(), Metric: stats.ProgramCost(a.Name), Value: ns})
	}
	return out
}

// warmup runs a job's warm-up plan once and throws its samples away. A failing warm-up is
// noted; the repetitions still run and fail on their own if the job is broken.
func (r *runner) warmup(ctx context.Context, l *live) {
	t0 := time.Now()
	samples, err := r.measure(ctx, l, *l.j.warmup)
	t1 := time.Now()
	l.j.meta.Warmup = &reports.RepMeta{Rep: 0, Started: t0.UTC(), Ended: t1.UTC(), Samples: len(samples)}
	if err != nil && ctx.Err() == nil {
		w := "warm-up failed: " + err.Error()
		l.j.meta.Warnings = append(l.j.meta.Warnings, w)
		r.o.Log.Warn(fmt.Sprintf("%s on %s: %s", l.j.plan.Experiment, l.j.name(), w))
	}
	r.o.Log.Info(fmt.Sprintf("  %s/%s warm-up (not recorded)", l.j.plan.Experiment, l.j.name()),
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
		r.failed = append(r.failed, j.plan.Experiment+"/"+j.name())
		r.o.Log.Error(fmt.Sprintf("%s on %s failed", j.plan.Experiment, j.name()), "err", l.err)
	}
}

// writeMeta brings meta.json up to date. A failure is logged; the run goes on (the next
// write may succeed, and the last one decides the run's outcome).
func (r *runner) writeMeta() error {
	err := r.out.writeMeta(r.meta)
	if err != nil {
		r.o.Log.Error("meta.json could not be written", "err", err)
	}
	return err
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
