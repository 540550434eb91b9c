package main

import (
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/edgebpf/edgebpf/netsetup"
)

func newCleanupCmd() *cobra.Command {
	var force bool
	c := &cobra.Command{
		Use:   "cleanup",
		Short: "Remove what killed edgebpf runs left behind",
		Long: `Cleanup removes the namespaces (with every link, bridge and BPF attachment in them), child
processes and state records of edgebpf processes that no longer run, and marks the meta.json
of a run that was killed while "running" as "killed". It touches nothing without the edgebpf-
prefix and nothing a running edgebpf process owns.

A namespace is left alone, and listed with the reason, when its session's process runs, or
when a live process holds it open (a file descriptor on it, or a thread inside): every
running edgebpf session holds its namespaces open, so this protects a node whose state
record is not visible (another state directory, a private mount namespace). Such processes
are never killed and such namespaces never removed, even with --force.

Without --force cleanup removes only what a dead session's record proves to be its own. It
lists, and keeps, edgebpf- namespaces that no record covers and namespaces in which
processes run that the dead session did not start; --force kills those processes and
removes those namespaces.`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			return runCleanup(c.OutOrStdout(), force)
		},
	}
	c.Flags().BoolVar(&force, "force", false, "also remove edgebpf- namespaces without a session record, and kill processes a dead session did not start (never a process that holds a namespace open)")
	return c
}

// runCleanup runs `edgebpf cleanup` and lists on out what it removed and what it kept.
func runCleanup(out io.Writer, force bool) error {
	if err := netsetup.RequirePrivileges(); err != nil {
		return err
	}
	rep, err := netsetup.Cleanup(netsetup.CleanupOptions{Force: force})
	for _, p := range rep.Processes {
		fmt.Fprintf(out, "killed process %d\n", p)
	}
	for _, n := range rep.Namespaces {
		fmt.Fprintf(out, "removed namespace %s\n", n)
	}
	for _, r := range rep.Records {
		fmt.Fprintf(out, "removed record %s\n", r)
	}
	for _, d := range rep.Results {
		fmt.Fprintf(out, "marked run %s killed (its meta.json said running)\n", d)
	}
	for _, s := range rep.Skipped {
		fmt.Fprintf(out, "left running %s\n", s)
	}
	forcible := 0
	for _, k := range rep.Kept {
		hint := ""
		if k.Force {
			hint, forcible = " (--force removes it)", forcible+1
		}
		fmt.Fprintf(out, "kept namespace %s: %s%s\n", k.Name, k.Reason, hint)
	}
	if len(rep.Processes)+len(rep.Namespaces)+len(rep.Records)+len(rep.Kept) == 0 {
		fmt.Fprintln(out, "nothing to clean up")
	}
	if forcible > 0 {
		fmt.Fprintf(out, "%d namespace(s) kept: check the reasons above, then run `edgebpf cleanup --force` to remove them\n", forcible)
	}
	return err
}
