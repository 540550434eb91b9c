package main

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	machine "github.com/edgebpf/edgebpf/internal/host"
	"github.com/edgebpf/edgebpf/internal/host/probe"
	"github.com/edgebpf/edgebpf/netsetup"
	"github.com/edgebpf/edgebpf/scenarios"
	"github.com/edgebpf/edgebpf/subjects"
)

// checkOptions are the flags of `edgebpf check`.
type checkOptions struct {
	dataplanes string
}

func newCheckCmd() *cobra.Command {
	var o checkOptions
	c := &cobra.Command{
		Use:   "check",
		Short: "Probe this machine's kernel and tools and say which experiments and data planes can run here",
		Long: `Check probes what edgebpf needs — network namespaces, veths and bridges, BPF with BTF and TCX
links, XDP on veths, TUN devices, nf_tables, and iperf3 and sockperf for calibration — by trying
each on a throwaway node, and says which experiments can run on which data planes (or speed-limit
configurations). edgebpf run does the same probe at its start and skips what cannot run, with
the reason. Check also shows what makes numbers less trustworthy: the CPU governor, SMT and turbo
state, and other load. The privileged probes need root.`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			return runCheck(c.Context(), c.OutOrStdout(), o)
		},
	}
	c.Flags().StringVar(&o.dataplanes, "dataplane", "all", "comma-separated data planes to check, or all")
	return c
}

// validate checks the flags and returns the data planes to check.
func (o checkOptions) validate() ([]string, error) {
	planes, err := subjects.DataPlanes().Parse(o.dataplanes)
	if err != nil {
		return nil, usageError("%w", err)
	}
	return planes, nil
}

// runCheck runs `edgebpf check`: it probes the machine (the privileged probes only as root)
// and prints what can run here to w.
func runCheck(ctx context.Context, w io.Writer, o checkOptions) error {
	planes, err := o.validate()
	if err != nil {
		return err
	}
	var sess *netsetup.Session
	privErr := netsetup.RequirePrivileges()
	if privErr == nil {
		if sess, err = netsetup.NewSession("edgebpf check"); err != nil {
			return err
		}
	}
	r := probe.Features(sess)
	if sess != nil {
		if err := sess.Close(); err != nil {
			return fmt.Errorf("remove the probe node: %w (run `edgebpf cleanup`)", err)
		}
	}
	verdicts, err := scenarios.Feasibility(scenarios.Builtin(), planes, r)
	if err != nil {
		return err
	}
	host := machine.Collect()
	fmt.Fprintf(w, "kernel %s on %s, %d cores (%s)\n", host.Kernel, host.Arch, host.Cores, host.CPUModel)
	if privErr != nil {
		fmt.Fprintf(w, "not root: %v; the privileged probes did not run\n", privErr)
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "FEATURE\tAVAILABLE\tDETAIL")
	for _, f := range r.Features {
		fmt.Fprintf(tw, "%s\t%s\t%s\n", f.Name, yesNo(f.OK), f.Detail)
	}
	tw.Flush()
	fmt.Fprintln(w)
	printVerdicts(w, verdicts)
	printCrossNode(w, scenarios.CrossNodeFeasibility(r))
	load, warnings := machine.Hygiene(ctx, host)
	fmt.Fprintf(w, "\nmachine: governor %s, SMT %s, turbo %s, load average %.2f, %.0f %% busy over %.0f s\n",
		host.Governor, host.SMT, host.Turbo, load.LoadAvg1, load.BusyPercent, load.Sample)
	for _, s := range warnings {
		fmt.Fprintln(w, "warning:", s)
	}
	return nil
}

func yesNo(ok bool) string {
	if ok {
		return "yes"
	}
	return "no"
}

// printVerdicts writes one line per experiment: where it runs and, grouped by reason, where
// it is skipped; then a sentence on the whole.
func printVerdicts(w io.Writer, vs []scenarios.Verdict) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "EXPERIMENT\tRUNS ON\tSKIPPED")
	var order []string
	byExp := map[string][]scenarios.Verdict{}
	for _, v := range vs {
		if _, ok := byExp[v.Experiment]; !ok {
			order = append(order, v.Experiment)
		}
		byExp[v.Experiment] = append(byExp[v.Experiment], v)
	}
	can := 0
	for _, name := range order {
		var runs []string
		var reasons []string
		skipped := map[string][]string{}
		for _, v := range byExp[name] {
			if v.Reason == "" {
				runs = append(runs, v.DataPlane)
				can++
				continue
			}
			if !slices.Contains(reasons, v.Reason) {
				reasons = append(reasons, v.Reason)
			}
			skipped[v.Reason] = append(skipped[v.Reason], v.DataPlane)
		}
		var skip []string
		for _, r := range reasons {
			skip = append(skip, strings.Join(skipped[r], ", ")+": "+r)
		}
		label := name
		if byExp[name][0].Optional {
			label += " (optional)"
		}
		if byExp[name][0].Configuration && len(runs) > 0 {
			runs[0] = "configurations " + runs[0]
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", label, dash(strings.Join(runs, ", ")), dash(strings.Join(skip, "; ")))
	}
	tw.Flush()
	if can == len(vs) {
		fmt.Fprintln(w, "\neverything can run here.")
	} else {
		fmt.Fprintf(w, "\n%d of %d experiment runs can run here; edgebpf run skips the others with the reason above.\n", can, len(vs))
	}
}

// printCrossNode writes which data planes and mixed subjects a `--topology cross-node` run
// can measure here, and why not the others.
func printCrossNode(w io.Writer, vs []scenarios.CrossNodeVerdict) {
	fmt.Fprintln(w, "\nacross workers (edgebpf run --topology cross-node):")
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SUBJECT\tRUNS\tWHY NOT")
	for _, v := range vs {
		fmt.Fprintf(tw, "%s\t%s\t%s\n", v.Subject, yesNo(v.Reason == ""), dash(v.Reason))
	}
	tw.Flush()
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
