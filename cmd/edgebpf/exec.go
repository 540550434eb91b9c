package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/edgebpf/edgebpf/netsetup"
)

// execOptions are the flags and arguments of `edgebpf exec`.
type execOptions struct {
	node     string
	instance string   // SERVICE[/INSTANCE]
	command  []string // CMD [ARGS...]
	dashAt   int      // how many arguments come before --, -1 without it (cobra.Command.ArgsLenAtDash)
}

func newExecCmd() *cobra.Command {
	var o execOptions
	c := &cobra.Command{
		Use:   "exec SERVICE[/INSTANCE] -- CMD [ARGS...]",
		Short: "Run a command inside a service instance's network namespace",
		Long: `Exec runs CMD inside the network namespace of an instance of a running node (see 'edgebpf
status'). INSTANCE is the instance's index or name and defaults to 0. The command's exit code
becomes edgebpf's.`,
		Example: `  edgebpf exec svc1 -- iperf3 -s -D
  edgebpf exec svc0/0 -- ping -c 3 10.18.0.3`,
		Args: cobra.MinimumNArgs(2),
		RunE: func(c *cobra.Command, args []string) error {
			o.instance, o.command, o.dashAt = args[0], args[1:], c.ArgsLenAtDash()
			return runExec(c.OutOrStdout(), c.ErrOrStderr(), o)
		},
	}
	c.Flags().StringVar(&o.node, "node", "", "node name, when several nodes run")
	return c
}

// validate checks the arguments.
func (o execOptions) validate() error {
	if o.dashAt != 1 {
		return usageError("give the instance, then -- and the command: edgebpf exec svc0 -- ip addr")
	}
	return nil
}

// runExec runs `edgebpf exec`: the command in the instance's namespace, with the process's
// stdin and out and errOut, passing SIGTERM on. The command's exit code becomes edgebpf's.
func runExec(out, errOut io.Writer, o execOptions) error {
	if err := o.validate(); err != nil {
		return err
	}
	at, err := findInstance(o.instance, o.node)
	if errors.Is(err, errNoNode) {
		return fmt.Errorf("%w: start one with `edgebpf node`", err)
	} else if err != nil {
		return err
	}
	h, err := netsetup.OpenNamespace(at.instance.Namespace)
	if err != nil {
		return err
	}
	defer h.Close()
	name := o.command[0]
	cmd := exec.Command(name, o.command[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, out, errOut
	// Ctrl-C reaches the child through the terminal; SIGTERM is passed on.
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM)
	defer signal.Stop(sigs)
	if err := h.Start(cmd); err != nil {
		return fmt.Errorf("start %s: %w", name, err)
	}
	go func() {
		for s := range sigs {
			_ = cmd.Process.Signal(s)
		}
	}()
	err = cmd.Wait()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return &exitError{code: ee.ExitCode(), err: fmt.Errorf("%s exited with code %d", name, ee.ExitCode())}
	}
	return err
}
