package main

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/edgebpf/edgebpf/netsetup"
)

// testNode is a running node as the status records describe it, with one instance per name
// of every service.
func testNode(name string, services map[string][]string) statusNode {
	n := statusNode{NodeStatus: netsetup.NodeStatus{Name: name, Namespace: "edgebpf-t-" + name}}
	for svc, insts := range services {
		s := netsetup.ServiceStatus{Name: svc}
		for _, in := range insts {
			s.Instances = append(s.Instances, netsetup.InstanceStatus{Name: in, Namespace: "edgebpf-t-" + name + "-" + in})
		}
		n.Services = append(n.Services, s)
	}
	return n
}

func TestMatchInstance(t *testing.T) {
	nodes := []statusNode{
		testNode("a", map[string][]string{"svc0": {"svc0-0", "svc0-1"}, "web": {"web-0"}}),
		testNode("b", map[string][]string{"web": {"web-0"}, "db": {"db-0", "primary"}}),
	}
	ok := []struct{ spec, node, ns string }{
		{"svc0", "", "edgebpf-t-a-svc0-0"},        // instance 0 by default
		{"svc0/1", "", "edgebpf-t-a-svc0-1"},      // by index
		{"svc0/svc0-1", "", "edgebpf-t-a-svc0-1"}, // by name
		{"db/primary", "", "edgebpf-t-b-primary"}, // by a name that is not SERVICE-N
		{"web", "b", "edgebpf-t-b-web-0"},         // --node picks among nodes
	}
	for _, c := range ok {
		got, err := matchInstance(nodes, c.spec, c.node)
		require.NoError(t, err, "%s on %q", c.spec, c.node)
		assert.Equal(t, c.ns, got.instance.Namespace, "%s on %q", c.spec, c.node)
		assert.NotEmpty(t, got.node.Namespace, "the instance comes with its node")
	}
	bad := []struct{ spec, node, want string }{
		{"gamma", "", "no instance 0 of service gamma on a running node: see `edgebpf status`"},
		{"svc0/2", "", "no instance 2 of service svc0"},
		{"svc0", "b", "no instance 0 of service svc0"},
		{"svc0", "c", "no node c is running: see `edgebpf status`"},
		{"web", "", "service web runs on 2 nodes: choose one with --node"},
	}
	for _, c := range bad {
		_, err := matchInstance(nodes, c.spec, c.node)
		assert.ErrorContains(t, err, c.want, "%s on %q", c.spec, c.node)
	}
}

// TestMatchInstanceSkipsRemoteInstances: a worker of a cluster lists the other workers'
// instances without a namespace; exec can only enter its own.
func TestMatchInstanceSkipsRemoteInstances(t *testing.T) {
	w0 := testNode("c-w0", map[string][]string{"server": {"server-1"}})
	w0.Services[0].Instances = append([]netsetup.InstanceStatus{{Name: "server-0", Node: "c-w1"}}, w0.Services[0].Instances...)
	got, err := matchInstance([]statusNode{w0}, "server", "")
	require.NoError(t, err)
	assert.Equal(t, "edgebpf-t-c-w0-server-1", got.instance.Namespace, "index 0 counts local instances only")
	_, err = matchInstance([]statusNode{w0}, "server/server-0", "")
	assert.ErrorContains(t, err, "no instance server-0 of service server")
}
