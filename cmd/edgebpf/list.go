package main

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/edgebpf/edgebpf/scenarios"
	"github.com/edgebpf/edgebpf/subjects"
)

func newListCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "List experiments, data planes and profiles",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			return runList(c.OutOrStdout())
		},
	}
}

// runList runs `edgebpf list`: experiments, data planes and profiles, on out.
func runList(out io.Writer) error {
	w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "EXPERIMENT\tMETER\tSOURCE\tDESCRIPTION")
	for _, e := range scenarios.Builtin().Experiments {
		name := e.Name
		if e.Optional {
			name += " (optional)"
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", name, e.Meter, e.Source, e.Description)
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "DATA PLANES\t%s\n", strings.Join(subjects.DataPlanes().Names(), ", "))
	var mixed []string
	for _, m := range subjects.Mixed() {
		mixed = append(mixed, m.Name)
	}
	fmt.Fprintf(w, "MIXED\t%s (a data plane per worker, --topology cross-node only; any A+B of data planes)\n", strings.Join(mixed, ", "))
	fmt.Fprintf(w, "TOPOLOGIES\t%s\n", strings.Join(scenarios.Topologies, ", "))
	fmt.Fprintf(w, "PROFILES\t%s\n", strings.Join(scenarios.Profiles, ", "))
	return w.Flush()
}
