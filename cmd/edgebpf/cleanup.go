package main

import (
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/edgebpf/edgebpf/netsetup"
)

func newCleanupCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "cleanup",
		Short: "Remove what killed edgebpf runs left behind",
		Long: `Cleanup removes the namespaces (with every link, bridge and BPF attachment in them), child
processes and state records of edgebpf processes that no longer run. It touches nothing without
the edgebpf- prefix and nothing a running edgebpf process owns.`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			return runCleanup(c.OutOrStdout())
		},
	}
}

// runCleanup runs `edgebpf cleanup` and lists on out what it removed.
func runCleanup(out io.Writer) error {
	if err := netsetup.RequirePrivileges(); err != nil {
		return err
	}
	rep, err := netsetup.Cleanup()
	for _, p := range rep.Processes {
		fmt.Fprintf(out, "killed process %d\n", p)
	}
	for _, n := range rep.Namespaces {
		fmt.Fprintf(out, "removed namespace %s\n", n)
	}
	for _, r := range rep.Records {
		fmt.Fprintf(out, "removed record %s\n", r)
	}
	for _, s := range rep.Skipped {
		fmt.Fprintf(out, "left running %s\n", s)
	}
	if len(rep.Processes)+len(rep.Namespaces)+len(rep.Records) == 0 {
		fmt.Fprintln(out, "nothing to clean up")
	}
	return err
}
