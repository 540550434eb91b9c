package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/edgebpf/edgebpf/dataplanes"
	"github.com/edgebpf/edgebpf/internal/atomicfile"
	"github.com/edgebpf/edgebpf/netsetup"
)

func newNodeCmd() *cobra.Command {
	var (
		dp, names, readyFile string
		services, instances  int
		mtu                  int
	)
	c := &cobra.Command{
		Use:   "node",
		Short: "Run one emulated worker node in the foreground until interrupted",
		Long: `Node builds a worker node with services svc0, svc1, ... (or the names given with --names), each
with the given number of instances, deploys the data plane, writes the node's description to the
ready file, and waits for Ctrl-C or SIGTERM; then it removes everything it created. Use
'edgebpf status' to see its addresses and 'edgebpf exec' to run commands in its instances.`,
		Example: `  edgebpf node --services 2 --instances 1 --ready-file /tmp/node.json &
  edgebpf exec svc1 -- iperf3 -s -D
  edgebpf exec svc0 -- iperf3 -c "$(jq -r '.services[1].instances[0].ns_ip' /tmp/node.json)"`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) (err error) {
			var svcNames []string
			if names != "" {
				svcNames = strings.Split(names, ",")
			} else {
				if services < 0 || services > 250 {
					return usageError("--services %d is out of range: use 0 to 250", services)
				}
				for i := range services {
					svcNames = append(svcNames, fmt.Sprintf("svc%d", i))
				}
			}
			if instances < 1 {
				return usageError("--instances %d must be at least 1", instances)
			}
			plane, err := dataplanes.New(dp)
			if err != nil {
				return usageError("%w", err)
			}
			cfg := netsetup.NodeConfig{MTU: mtu}
			if err := cfg.Validate(); err != nil {
				return usageError("%w", err)
			}
			sess, err := netsetup.NewSession("edgebpf node")
			if err != nil {
				return err
			}
			defer func() { err = errors.Join(err, sess.Close()) }()
			node, err := netsetup.NewNode(sess, cfg)
			if err != nil {
				return err
			}
			if err := plane.Deploy(c.Context(), node); err != nil {
				return fmt.Errorf("deploy %s: %w", dp, err)
			}
			sess.OnClose(plane.Close)
			if err := node.SetLabels(dp, ""); err != nil {
				return err
			}
			for _, name := range svcNames {
				if _, err := node.AddService(name); err != nil {
					return err
				}
				for range instances {
					if _, err := node.AddInstance(name); err != nil {
						return err
					}
				}
			}
			st, _ := json.MarshalIndent(node.Status(), "", "  ")
			if readyFile != "" {
				if err := atomicfile.Write(readyFile, append(st, '\n'), 0o644); err != nil {
					return err
				}
				defer os.Remove(readyFile)
			}
			logger(c).Info("node ready; Ctrl-C to stop", "node", node.Name(), "namespace", node.NS.Name,
				"dataplane", dp, "services", len(svcNames), "instances", instances)
			<-c.Context().Done()
			return nil
		},
	}
	f := c.Flags()
	f.StringVar(&dp, "dataplane", "direct", "data plane to deploy")
	f.IntVar(&services, "services", 2, "number of services")
	f.StringVar(&names, "names", "", "comma-separated service names instead of svc0, svc1, ...")
	f.IntVar(&instances, "instances", 1, "instances per service")
	f.IntVar(&mtu, "mtu", netsetup.DefaultMTU, "MTU of the bridge and every veth")
	f.StringVar(&readyFile, "ready-file", "", "write the node's description (JSON) here once it is up; removed on exit")
	return c
}
