package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/edgebpf/edgebpf/netsetup"
)

// statusNode is a node in `edgebpf status --json`, with the session that owns it.
type statusNode struct {
	netsetup.NodeStatus
	Session string `json:"session"`
	PID     int    `json:"pid"`
	Command string `json:"command"`
}

// statusCluster is a cluster in `edgebpf status --json`, with the session that owns it.
type statusCluster struct {
	netsetup.ClusterStatus
	Session string `json:"session"`
	PID     int    `json:"pid"`
}

// liveNodes lists the nodes of every running edgebpf process.
func liveNodes() ([]statusNode, error) {
	nodes, _, err := liveState()
	return nodes, err
}

// liveState lists the nodes and clusters of every running edgebpf process.
func liveState() ([]statusNode, []statusCluster, error) {
	live, _, err := netsetup.Sessions()
	var out []statusNode
	var clusters []statusCluster
	for _, s := range live {
		for _, n := range s.Nodes {
			out = append(out, statusNode{NodeStatus: n, Session: s.ID, PID: s.PID, Command: s.Command})
		}
		for _, c := range s.Clusters {
			clusters = append(clusters, statusCluster{ClusterStatus: c, Session: s.ID, PID: s.PID})
		}
	}
	return out, clusters, err
}

// statusOptions are the flags of `edgebpf status`.
type statusOptions struct {
	json bool
}

func newStatusCmd() *cobra.Command {
	var o statusOptions
	c := &cobra.Command{
		Use:   "status",
		Short: "Show the nodes that running edgebpf processes hold, with their namespaces and addresses",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			return runStatus(c.OutOrStdout(), c.ErrOrStderr(), o)
		},
	}
	c.Flags().BoolVar(&o.json, "json", false, "print JSON for scripts")
	return c
}

// runStatus runs `edgebpf status`: the running nodes, as a table or JSON, on out.
func runStatus(out, errOut io.Writer, o statusOptions) error {
	nodes, clusters, err := liveState()
	if err != nil {
		fmt.Fprintln(errOut, "edgebpf: warning:", err)
	}
	if o.json {
		if nodes == nil {
			nodes = []statusNode{}
		}
		if clusters == nil {
			clusters = []statusCluster{}
		}
		b, err := json.MarshalIndent(map[string]any{"nodes": nodes, "clusters": clusters}, "", "  ")
		if err != nil {
			return err
		}
		_, err = fmt.Fprintln(out, string(b))
		return err
	}
	if len(nodes) == 0 {
		fmt.Fprintln(out, "no edgebpf node is running")
		return nil
	}
	w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	for _, c := range clusters {
		shaped := "unshaped"
		if c.RateBits > 0 {
			shaped = fmt.Sprintf("shaped to %d bit/s", c.RateBits)
		}
		fmt.Fprintf(w, "cluster %s\tunderlay %s %s (%s, mtu %d, %s)\tworkers %s\tpid %d\n",
			c.Name, c.UnderlayNamespace, c.UnderlayBridge, c.Underlay, c.UnderlayMTU, shaped, strings.Join(c.Workers, ", "), c.PID)
	}
	for _, n := range nodes {
		underlay := ""
		if n.UnderlayIP != "" {
			underlay = "\tnode IP " + n.UnderlayIP
		}
		fmt.Fprintf(w, "node %s\tnamespace %s\tbridge %s %s\tdataplane %s%s\tpid %d (%s)\n",
			n.Name, n.Namespace, n.Bridge, n.BridgeIP, n.DataPlane, underlay, n.PID, n.Command)
		fmt.Fprintln(w, "  SERVICE\tSERVICE IP\tINSTANCE\tNAMESPACE IP\tINSTANCE IP\tVETH\tNAMESPACE")
		for _, s := range n.Services {
			for _, in := range s.Instances {
				fmt.Fprintf(w, "  %s\t%s\t%s\t%s\t%s\t%s\t%s\n", s.Name, s.ServiceIP, in.Name, in.NSIP, in.InstanceIP, in.Veth, in.Namespace)
			}
			if len(s.Instances) == 0 {
				fmt.Fprintf(w, "  %s\t%s\t-\t\t\t\t\n", s.Name, s.ServiceIP)
			}
		}
	}
	return w.Flush()
}
