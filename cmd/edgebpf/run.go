package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/edgebpf/edgebpf/dataplanes"
	"github.com/edgebpf/edgebpf/internal/cpupin"
	"github.com/edgebpf/edgebpf/netsetup"
	"github.com/edgebpf/edgebpf/scenarios"
)

func newRunCmd() *cobra.Command {
	var (
		dps, profile, out, duration, rates, scenario string
		reps, mtu                                    int
		cpus                                         [3]string
		warmup, bpfStats                             bool
	)
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
what that covers.

--bpf-stats has the kernel count the run time of BPF programs during the run and records,
per repetition, the mean run time per packet of every program of the eBPF data plane and
of the XDP speed-limit responder (bpf_ns_per_pkt:<program>). It adds two clock reads to
every run of every BPF program on the machine, so keep it out of runs whose latency you
compare.`,
		Example: `  edgebpf run all --profile quick --out results/quick
  edgebpf run latency throughput --dataplane direct --reps 10
  edgebpf run bottleneck --rates 100M,500M,1G --duration 5s`,
		RunE: func(c *cobra.Command, args []string) error {
			o := scenarios.RunOptions{Experiments: args, Profile: profile, Out: out, Command: os.Args,
				Log: logger(c.ErrOrStderr()), Node: netsetup.NodeConfig{MTU: mtu}}
			var err error
			for i, role := range cpupin.Roles {
				if cpus[i] == "" {
					continue
				}
				s, err := cpupin.Parse(cpus[i])
				if err != nil {
					return usageError("--cpu-%s: %w", role, err)
				}
				if o.CPUs == nil {
					o.CPUs = cpupin.Plan{}
				}
				o.CPUs[role] = s
			}
			if err := o.CPUs.Validate(); err != nil {
				return usageError("%w", err)
			}
			if c.Flags().Changed("warmup") {
				o.Warmup = &warmup
			}
			if o.DataPlanes, err = dataplanes.Parse(dps); err != nil {
				return usageError("%w", err)
			}
			if err := scenarios.CheckProfile(profile); err != nil {
				return usageError("%w", err)
			}
			if reps < 0 {
				return usageError("--reps %d must be positive", reps)
			}
			o.Overrides.Reps = reps
			o.Overrides.BPFStats = bpfStats
			if duration != "" {
				if o.Overrides.Duration, err = scenarios.ParseDuration(duration); err != nil {
					return usageError("--duration: %w", err)
				}
			}
			if rates != "" {
				if o.Overrides.Rates, err = scenarios.ParseRates(rates); err != nil {
					return usageError("--rates: %w", err)
				}
			}
			if scenario != "" {
				f, err := os.Open(scenario)
				if err != nil {
					return usageError("--scenario: %w", err)
				}
				o.Suite, err = scenarios.Parse(f, scenario)
				f.Close()
				if err != nil {
					return usageError("%w", err)
				}
			}
			if o.Out == "" {
				o.Out = filepath.Join("results", time.Now().Format("20060102-150405")+"-"+profile)
			}
			meta, err := scenarios.Run(c.Context(), o)
			if meta != nil {
				fmt.Fprintf(c.OutOrStdout(), "results: %s (status %s)\n", o.Out, meta.Status)
			}
			if errors.Is(err, scenarios.ErrInterrupted) {
				return &exitError{code: 130, err: fmt.Errorf("%w: kept what was measured in %s", err, o.Out)}
			}
			return err
		},
	}
	f := c.Flags()
	f.StringVar(&dps, "dataplane", "direct", "comma-separated data planes, or all")
	f.StringVar(&profile, "profile", "quick", "smoke (seconds), quick (minutes) or full (the theses' parameters)")
	f.StringVar(&out, "out", "", "results directory (default results/<time>-<profile>)")
	f.IntVar(&reps, "reps", 0, "repetitions per experiment (default: the profile's)")
	f.StringVar(&duration, "duration", "", "main duration of each experiment, e.g. 10s (default: the profile's)")
	f.StringVar(&rates, "rates", "", "bottleneck target rates, e.g. 1M,50M,100M (default: the profile's)")
	f.StringVar(&scenario, "scenario", "", "a suite file of the shape of scenarios/suite.json instead of the built-in one")
	f.IntVar(&mtu, "mtu", netsetup.DefaultMTU, "MTU of the bridge and every veth")
	for i, role := range cpupin.Roles {
		f.StringVar(&cpus[i], "cpu-"+string(role), "", "pin the "+string(role)+" role's threads to these CPUs, e.g. 1 or 2-3 (default: not pinned)")
	}
	f.BoolVar(&bpfStats, "bpf-stats", false, "record every BPF program's run time per packet (bpf_ns_per_pkt); slows every BPF program a little")
	f.BoolVar(&warmup, "warmup", false, "one unrecorded run of the smoke parameters per experiment and data plane first (default: on for quick and full, off for smoke)")
	return c
}
