package main

import (
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/edgebpf/edgebpf/reports"
)

// compareOptions are the flags and arguments of `edgebpf compare`.
type compareOptions struct {
	baseDir, newDir  string
	threshold, alpha float64
	format, relative string
	force            bool
}

func newCompareCmd() *cobra.Command {
	var o compareOptions
	c := &cobra.Command{
		Use:   "compare BASE_DIR NEW_DIR",
		Short: "Compare two results directories; exit 1 on a significant regression",
		Long: `compare compares every (experiment, data plane, metric, x) that both results directories
measured, with the repetition as the unit (benchstat's model): each repetition is reduced to one
value (its median, or its mean for rates, shares and counts), and the two sides' repetition
values are tested with Mann-Whitney U. Every row shows the change (Hodges-Lehmann shift, with its
confidence interval), the p-value, the minimum detectable change at --alpha, and each side's
coefficient of variation. A change is a regression only when it is significant (p < --alpha) and
its estimate is worse than --threshold in the metric's better-direction; with too few
repetitions for --alpha to be reachable the row says "too few reps" and gives no verdict; rows
too noisy or insensitive to gate on are flagged. Entries measured on one side only are listed.

--relative-to DATAPLANE (e.g. direct) divides every other data plane's repetition by the
reference data plane's same repetition and compares only these ratios: the runner interleaves
data planes, so a machine that is busier during one run than during the other slows both sides
of each ratio alike. The CI recipe (README) runs --profile ci --dataplane direct,ebpf and
compares with --relative-to direct.

Before comparing, compare checks the two runs' meta.json: it refuses runs that differ in profile,
experiment parameters, topology or results schema (--force compares anyway and says so), and
warns when kernel, CPU model, core count, pinning or governor differ.

Exit status: 0 without regressions, 1 with at least one, 2 when the input cannot be used
(not a results directory, a malformed raw file, a metric in different units on the two
sides, no experiment in common, runs the metadata guard refuses).`,
		Args: func(c *cobra.Command, args []string) error {
			if len(args) != 2 {
				return usageError("compare needs two results directories, BASE_DIR and NEW_DIR, got %d arguments", len(args))
			}
			return nil
		},
		RunE: func(c *cobra.Command, args []string) error {
			o.baseDir, o.newDir = args[0], args[1]
			return runCompare(c.OutOrStdout(), o)
		},
	}
	c.Flags().Float64Var(&o.threshold, "threshold", 5, "relative change of the median in percent that a significant difference must exceed to count")
	c.Flags().Float64Var(&o.alpha, "alpha", 0.05, "significance level of the Mann-Whitney U test")
	c.Flags().StringVar(&o.format, "format", "text", "output format: "+strings.Join(reports.CompareFormats, ", "))
	c.Flags().StringVar(&o.relative, "relative-to", "", "compare every data plane's repetitions divided by this data plane's same repetitions (e.g. direct): cancels a machine that is slower in one run than in the other")
	c.Flags().BoolVar(&o.force, "force", false, "compare runs that differ in profile, experiment parameters, topology or results schema; the output says so and what differed")
	return c
}

// validate checks the flags.
func (o compareOptions) validate() error {
	if !slices.Contains(reports.CompareFormats, o.format) {
		return usageError("--format %q is unknown: choose from %s", o.format, strings.Join(reports.CompareFormats, ", "))
	}
	if !(o.threshold >= 0 && o.threshold < 1000) {
		return usageError("--threshold %v must be a percentage from 0 to 1000", o.threshold)
	}
	if !(o.alpha > 0 && o.alpha < 1) {
		return usageError("--alpha %v must be between 0 and 1", o.alpha)
	}
	return nil
}

// runCompare runs `edgebpf compare` and writes the comparison to out.
func runCompare(out io.Writer, o compareOptions) error {
	if err := o.validate(); err != nil {
		return err
	}
	cmp, err := reports.Compare(o.baseDir, o.newDir, reports.CompareOptions{Threshold: o.threshold / 100, Alpha: o.alpha, Force: o.force, RelativeTo: o.relative})
	if err != nil {
		var ie *reports.InputError
		if errors.As(err, &ie) {
			return &exitError{code: 2, err: err}
		}
		return err
	}
	if err := reports.WriteComparison(out, cmp, o.format); err != nil {
		return err
	}
	if cmp.Regressions > 0 {
		return &exitError{code: 1, err: fmt.Errorf("%d significant regressions beyond %g %% (see the table)", cmp.Regressions, o.threshold)}
	}
	return nil
}
