package main

import (
	"errors"
	"fmt"
	"io"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/edgebpf/edgebpf/reports"
	"github.com/edgebpf/edgebpf/subjects"
)

func newReportCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "report DIR",
		Short: "Rebuild summaries, tables, plots and index.html of a results directory from its raw data",
		Long: `report rebuilds everything a results directory shows from DIR/meta.json and DIR/raw alone:
summary.json, summary.md (the theses' tables with this run's numbers, then every experiment),
plots/*.png and *.svg, and index.html, one self-contained page. A run copied from another
machine can be reported anywhere. Exit status 2 when DIR is not a results directory or a raw
file is malformed (everything else is still reported), 1 when writing fails.`,
		Args: cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			return runReport(c.OutOrStdout(), args[0])
		},
	}
}

// runReport runs `edgebpf report DIR` and says on out what it rebuilt.
func runReport(out io.Writer, dir string) error {
	r, err := reports.Build(dir, subjects.All())
	if r != nil {
		fmt.Fprintf(out, "%s: %d summary entries, %d tables, %d figures (%d without data): %s\n",
			dir, len(r.Entries), len(r.Tables), len(r.Figures), len(r.Skipped), filepath.Join(dir, "index.html"))
	}
	var ie *reports.InputError
	if errors.As(err, &ie) {
		return &exitError{code: 2, err: err}
	}
	return err
}
