package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/edgebpf/edgebpf/reports"
)

func newReportCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "report DIR",
		Short: "Rebuild summary.json and summary.md of a results directory from its raw data",
		Args:  cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			dir := args[0]
			if _, err := reports.ReadMeta(dir); err != nil {
				return &exitError{code: 2, err: err}
			}
			entries, err := reports.WriteSummary(dir)
			fmt.Fprintf(c.OutOrStdout(), "%s: %d summary entries\n", dir, len(entries))
			return err
		},
	}
}
