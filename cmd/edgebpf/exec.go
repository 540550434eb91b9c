package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/edgebpf/edgebpf/netsetup"
)

func newExecCmd() *cobra.Command {
	var nodeName string
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
			if c.ArgsLenAtDash() != 1 {
				return usageError("give the instance, then -- and the command: edgebpf exec svc0 -- ip addr")
			}
			at, err := findInstance(args[0], nodeName)
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
			cmd := exec.Command(args[1], args[2:]...)
			cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, c.OutOrStdout(), c.ErrOrStderr()
			// Ctrl-C reaches the child through the terminal; SIGTERM is passed on.
			sigs := make(chan os.Signal, 1)
			signal.Notify(sigs, syscall.SIGTERM)
			defer signal.Stop(sigs)
			if err := h.Start(cmd); err != nil {
				return fmt.Errorf("start %s: %w", args[1], err)
			}
			go func() {
				for s := range sigs {
					_ = cmd.Process.Signal(s)
				}
			}()
			err = cmd.Wait()
			var ee *exec.ExitError
			if errors.As(err, &ee) {
				return &exitError{code: ee.ExitCode(), err: fmt.Errorf("%s exited with code %d", args[1], ee.ExitCode())}
			}
			return err
		},
	}
	c.Flags().StringVar(&nodeName, "node", "", "node name, when several nodes run")
	return c
}
