package main

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/edgebpf/edgebpf/reports"
)

func newCompareCmd() *cobra.Command {
	var threshold, alpha float64
	var format string
	var force bool
	c := &cobra.Command{
		Use:   "compare BASE_DIR NEW_DIR",
		Short: "Compare two results directories; exit 1 on a significant regression",
		Long: `compare compares every (experiment, data plane, metric, x) that both results directories
measured: the baseline and new medians, their relative change, and the p-value of a
Mann-Whitney U test on the raw samples (benchstat's method). A change is a regression only
when it is worse than --threshold in the metric's better-direction and significant
(p < --alpha). Entries measured on one side only are listed.

Exit status: 0 without regressions, 1 with at least one, 2 when the input cannot be used
(not a results directory, a malformed raw file, a metric in different units on the two
sides, no experiment in common).`,
		Args: func(c *cobra.Command, args []string) error {
			if len(args) != 2 {
				return usageError("compare needs two results directories, BASE_DIR and NEW_DIR, got %d arguments", len(args))
			}
			return nil
		},
		RunE: func(c *cobra.Command, args []string) error {
			if !slices.Contains(reports.CompareFormats, format) {
				return usageError("--format %q is unknown: choose from %s", format, strings.Join(reports.CompareFormats, ", "))
			}
			if !(threshold >= 0 && threshold < 1000) {
				return usageError("--threshold %v must be a percentage from 0 to 1000", threshold)
			}
			if !(alpha > 0 && alpha < 1) {
				return usageError("--alpha %v must be between 0 and 1", alpha)
			}
			cmp, err := reports.Compare(args[0], args[1], reports.CompareOptions{Threshold: threshold / 100, Alpha: alpha, Force: force})
			if err != nil {
				var ie *reports.InputError
				if errors.As(err, &ie) {
					return &exitError{code: 2, err: err}
				}
				return err
			}
			if err := reports.WriteComparison(c.OutOrStdout(), cmp, format); err != nil {
				return err
			}
			if cmp.Regressions > 0 {
				return &exitError{code: 1, err: fmt.Errorf("%d significant regressions beyond %g %% (see the table)", cmp.Regressions, threshold)}
			}
			return nil
		},
	}
	c.Flags().Float64Var(&threshold, "threshold", 5, "relative change of the median in percent that a significant difference must exceed to count")
	c.Flags().Float64Var(&alpha, "alpha", 0.05, "significance level of the Mann-Whitney U test")
	c.Flags().StringVar(&format, "format", "text", "output format: "+strings.Join(reports.CompareFormats, ", "))
	c.Flags().BoolVar(&force, "force", false, "compare runs that differ in profile, experiment parameters, topology or results schema; the output says so and what differed")
	return c
}
