package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/edgebpf/edgebpf/dataplanes/ebpf/manager"
	"github.com/edgebpf/edgebpf/internal/cpupin"
	"github.com/edgebpf/edgebpf/netsetup"
	"github.com/edgebpf/edgebpf/scenarios"
)

// runOptions are the flags and arguments of `edgebpf run`.
type runOptions struct {
	experiments                                         []string
	dataplanes, profile, out, duration, rates, scenario string
	chain, topology, placement, underlayRate            string
	reps, mtu, workers                                  int
	cpus                                                [3]string // per cpupin.Roles
	warmup, warmupSet, bpfStats, repsSet                bool
	dryRun                                              bool
}

func newRunCmd() *cobra.Command {
	var o runOptions
	c := &cobra.Command{
		Use:   "run [EXPERIMENT...|all]",
		Short: "Run experiments and write raw CSV, summary.json and meta.json",
		Long: `Run builds a node with a client and a server service for every experiment and data
plane, runs the experiment's meter, and writes DIR/meta.json, DIR/raw/<experiment>/<dataplane>.csv,
DIR/summary.json and DIR/summary.md as it goes. Ctrl-C stops within a second or two, removes what
the run created and keeps what was measured.

It first probes the kernel (as edgebpf check does) and skips, with the reason in meta.json and
the report, what this machine cannot run. Repetitions are interleaved across data planes
(A B C A B C ...), after one unrecorded warm-up run of each (--warmup, on for quick and full).
--cpu-client, --cpu-server and --cpu-proxy pin the threads of those roles; meta.json says
what that covers. Without --cpu-client and --cpu-server, calibration and latency-rr pin the
client and the server (our meters and iperf3/sockperf alike) to two different CPUs, and
meta.json records it per experiment.

--bpf-stats has the kernel count the run time of BPF programs during the run and records,
per repetition, the mean run time per packet of every program of the eBPF data plane and
of the XDP speed-limit responder (bpf_ns_per_pkt:<program>). It adds two clock reads to
every run of every BPF program on the machine, so keep it out of runs whose latency you
compare.

--topology cross-node builds, per experiment and data plane, a cluster of --workers emulated
workers (default 2) joined by an underlay, deploys the data plane on every worker and places
the client on worker 0 and the server on worker 1 (--placement client=0,server=1). A mixed
subject such as ebpf+userspace runs ebpf on worker 0 and userspace on worker 1; "all" includes
it under cross-node. Results carry the topology in the experiment's name (latency@cross-node),
so same-node and cross-node rows never mix; --topology same-node,cross-node runs both in one
run, their repetitions interleaved. --underlay-rate shapes each worker's underlay link.`,
		Example: `  edgebpf run all --profile quick --out results/quick
  edgebpf run latency throughput --topology cross-node --dataplane all --underlay-rate 1G
  edgebpf run latency throughput --dataplane direct --reps 10
  edgebpf run bottleneck --rates 100M,500M,1G --duration 5s`,
		RunE: func(c *cobra.Command, args []string) error {
			o.experiments = args
			o.warmupSet = c.Flags().Changed("warmup")
			o.repsSet = c.Flags().Changed("reps")
			return runRun(c.Context(), c.OutOrStdout(), c.ErrOrStderr(), o)
		},
	}
	f := c.Flags()
	f.StringVar(&o.dataplanes, "dataplane", "direct", "comma-separated data planes, or all")
	f.StringVar(&o.profile, "profile", "quick", "smoke (seconds), ci (the headline metrics for a regression gate, about 2 min), quick (minutes) or full (the theses' parameters)")
	f.StringVar(&o.out, "out", "", "results directory (default results/<time>-<profile>)")
	f.IntVar(&o.reps, "reps", 0, "repetitions per experiment (default: the profile's)")
	f.StringVar(&o.duration, "duration", "", "main duration of each experiment, e.g. 10s (default: the profile's)")
	f.StringVar(&o.rates, "rates", "", "bottleneck target rates, e.g. 1M,50M,100M (default: the profile's)")
	f.StringVar(&o.scenario, "scenario", "", "a suite file of the shape of scenarios/suite.json instead of the built-in one")
	f.IntVar(&o.mtu, "mtu", netsetup.DefaultMTU, "MTU of the bridge and every veth")
	f.StringVar(&o.topology, "topology", "", "same-node (default: client and server on one node), cross-node (a cluster of workers per job), or same-node,cross-node (both, interleaved)")
	f.IntVar(&o.workers, "workers", 0, "workers of each cluster under --topology cross-node (default 2)")
	f.StringVar(&o.placement, "placement", "", "worker of each service under --topology cross-node (default client=0,server=1)")
	f.StringVar(&o.underlayRate, "underlay-rate", "", "shape each worker's underlay link to this rate under --topology cross-node, e.g. 1G (default: unshaped)")
	for i, role := range cpupin.Roles {
		f.StringVar(&o.cpus[i], "cpu-"+string(role), "", "pin the "+string(role)+" role's threads to these CPUs, e.g. 1 or 2-3 (default: not pinned)")
	}
	f.BoolVar(&o.bpfStats, "bpf-stats", false, "record every BPF program's run time per packet (bpf_ns_per_pkt); slows every BPF program a little")
	f.StringVar(&o.chain, "chain", string(manager.DefaultChain), "how the eBPF manager chains modules on a veth: dispatcher (one dispatcher program per veth and hook, attached once; modules in its program arrays) or tcx (a TCX link per module and veth, an RCU grace period each)")
	f.BoolVar(&o.dryRun, "dry-run", false, "print the plan and its estimated duration per experiment and in total, and run nothing")
	f.BoolVar(&o.warmup, "warmup", false, "one unrecorded run of the smoke parameters per experiment and data plane first (default: on for quick and full, off for smoke)")
	return c
}

// validate checks the flags and arguments, reading the --scenario file, and turns them into
// the options of scenarios.Run (without its log and command line).
func (o runOptions) validate() (scenarios.RunOptions, error) {
	r := scenarios.RunOptions{Experiments: o.experiments, Profile: o.profile, Out: o.out,
		Node: netsetup.NodeConfig{MTU: o.mtu}}
	var err error
	for i, role := range cpupin.Roles {
		if o.cpus[i] == "" {
			continue
		}
		s, err := cpupin.Parse(o.cpus[i])
		if err != nil {
			return r, usageError("--cpu-%s: %w", role, err)
		}
		if r.CPUs == nil {
			r.CPUs = cpupin.Plan{}
		}
		r.CPUs[role] = s
	}
	if err := r.CPUs.Validate(); err != nil {
		return r, usageError("%w", err)
	}
	if o.warmupSet {
		warmup := o.warmup
		r.Warmup = &warmup
	}
	if err := scenarios.CheckProfile(o.profile); err != nil {
		return r, usageError("%w", err)
	}
	if o.reps < 0 || o.repsSet && o.reps == 0 {
		return r, usageError("--reps %d must be positive: give at least 1, or leave it out for the profile's", o.reps)
	}
	r.Overrides.Reps = o.reps
	r.Overrides.BPFStats = o.bpfStats
	if r.Chain, err = manager.ParseChain(o.chain); err != nil {
		return r, usageError("--chain: %w", err)
	}
	if o.duration != "" {
		if r.Overrides.Duration, err = scenarios.ParseDuration(o.duration); err != nil {
			return r, usageError("--duration: %w", err)
		}
	}
	if o.rates != "" {
		if r.Overrides.Rates, err = scenarios.ParseRates(o.rates); err != nil {
			return r, usageError("--rates: %w", err)
		}
	}
	if o.scenario != "" {
		if r.Suite, err = readSuite(o.scenario); err != nil {
			return r, err
		}
	}
	if r.Topology, err = o.topologyFlags(); err != nil {
		return r, err
	}
	kind := r.Topology.Kind
	if kind == "" && r.Suite != nil && r.Suite.Topology != nil {
		kind = r.Suite.Topology.Kind
	}
	if r.DataPlanes, err = scenarios.ParseDataPlanes(o.dataplanes, kind); err != nil {
		return r, usageError("%w", err)
	}
	// Experiments, profiles, flags that apply to none of them, the MTU: every mistake
	// scenarios.Run would find is found here, before anything is created.
	if err := r.Check(); err != nil {
		return r, usageError("%w", err)
	}
	return r, nil
}

// topologyFlags reads --topology, --workers, --placement and --underlay-rate.
func (o runOptions) topologyFlags() (scenarios.Topology, error) {
	t := scenarios.Topology{Kind: o.topology, Workers: o.workers}
	if o.workers < 0 {
		return t, usageError("--workers %d must be positive: give at least 2, or leave it out for 2", o.workers)
	}
	var err error
	if o.placement != "" {
		if t.Placement, err = scenarios.ParsePlacement(o.placement); err != nil {
			return t, usageError("--placement: %w", err)
		}
	}
	if o.underlayRate != "" {
		rate, err := scenarios.ParseRate(o.underlayRate)
		if err != nil {
			return t, usageError("--underlay-rate: %w", err)
		}
		t.UnderlayRate = scenarios.Rate(rate)
	}
	return t, nil
}

// readSuite reads the --scenario file.
func readSuite(path string) (*scenarios.Suite, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, usageError("--scenario: %w", err)
	}
	defer f.Close()
	s, err := scenarios.Parse(f, path)
	if err != nil {
		return nil, usageError("%w", err)
	}
	return s, nil
}

// runRun runs `edgebpf run`: the experiments, with progress on errOut and where the results
// went on out.
func runRun(ctx context.Context, out, errOut io.Writer, o runOptions) error {
	r, err := o.validate()
	if err != nil {
		return err
	}
	if o.dryRun {
		return dryRun(out, r)
	}
	r.Command, r.Log = os.Args, logger(errOut)
	if r.Out == "" {
		r.Out = filepath.Join("results", time.Now().Format("20060102-150405")+"-"+o.profile)
	}
	meta, err := scenarios.Run(ctx, r)
	if meta != nil {
		fmt.Fprintf(out, "results: %s (status %s)\n", r.Out, meta.Status)
	}
	if errors.Is(err, scenarios.ErrInterrupted) {
		return &exitError{code: 130, err: fmt.Errorf("%w: kept what was measured in %s", err, r.Out)}
	}
	return err
}
