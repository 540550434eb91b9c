// Command edgebpf builds emulated edge worker nodes out of network namespaces, deploys data
// planes on them, measures them, and writes results a reviewer can trust. `edgebpf --help`
// lists the subcommands; README.md explains them.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/edgebpf/edgebpf/reports"
)

// exitError carries an exit code other than 1.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

func main() {
	ctx, cancel := context.WithCancel(context.Background())
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	go func() {
		first := true
		for s := range sigs {
			if first {
				fmt.Fprintf(os.Stderr, "edgebpf: %s: stopping and removing what this run created\n", s)
				cancel()
				first = false
				continue
			}
			fmt.Fprintln(os.Stderr, "edgebpf: still cleaning up; if it hangs, kill it and run `edgebpf cleanup`")
		}
	}()
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	cancel()
	os.Exit(code)
}

// run executes the command line and returns the process's exit code.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	root := newRoot(stdout, stderr)
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return 0
	}
	fmt.Fprintln(stderr, "edgebpf:", err)
	var ee *exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	if strings.HasPrefix(err.Error(), "unknown command ") {
		// cobra's own check of the root's arguments: a mistyped subcommand.
		return 2
	}
	return 1
}

// usageArgs makes the argument checks of c and its subcommands usage errors (exit 2),
// including an unknown subcommand of a command that only groups others.
func usageArgs(c *cobra.Command) {
	if c.HasParent() && c.HasSubCommands() && !c.Runnable() {
		c.RunE = func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				return usageError("unknown command %q for %q (see `%s --help`)", args[0], cmd.CommandPath(), cmd.CommandPath())
			}
			return cmd.Help()
		}
	}
	if check := c.Args; check != nil {
		c.Args = func(cmd *cobra.Command, args []string) error {
			err := check(cmd, args)
			var ee *exitError
			if err == nil || errors.As(err, &ee) {
				return err
			}
			return &exitError{code: 2, err: fmt.Errorf("%w (see `%s --help`)", err, cmd.CommandPath())}
		}
	}
	for _, sub := range c.Commands() {
		usageArgs(sub)
	}
}

func newRoot(stdout, stderr io.Writer) *cobra.Command {
	root := &cobra.Command{
		Use:   "edgebpf",
		Short: "Measure what eBPF buys an edge node's network functions",
		Long: `edgebpf builds emulated edge worker nodes out of network namespaces, veths and a bridge,
deploys data planes on them (direct: no proxy; userspace: Oakestra's TUN proxy; ebpf: the eBPF
manager with its proxy module; nftables: kube-proxy's DNAT) and the Weinhold XDP responder,
drives the experiments of the Riegel 2024 and Weinhold 2023 theses, and writes raw
CSV, summaries and metadata. It never changes the host's own network namespace.`,
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       reports.Version,
	}
	root.SetVersionTemplate(versionText())
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return &exitError{code: 2, err: fmt.Errorf("%w (see `%s --help`)", err, c.CommandPath())}
	})
	root.AddCommand(
		newListCmd(), newCheckCmd(), newRunCmd(), newReportCmd(), newCompareCmd(), newNodeCmd(), newStatusCmd(), newExecCmd(), newCleanupCmd(),
	)
	root.AddCommand(newSpeedLimitCmd())
	usageArgs(root)
	return root
}

// logger writes progress lines to w, the command's stderr.
func logger(w io.Writer) *slog.Logger {
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{
		ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
			if a.Key == slog.TimeKey {
				return slog.String("time", a.Value.Time().Format("15:04:05"))
			}
			return a
		},
	}))
}

// usageError marks a mistake in the command line (exit code 2).
func usageError(format string, a ...any) error {
	return &exitError{code: 2, err: fmt.Errorf(format, a...)}
}
