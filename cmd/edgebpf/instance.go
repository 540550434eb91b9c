package main

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/edgebpf/edgebpf/netsetup"
)

// errNoNode is findInstance's error when no edgebpf node runs at all; each command adds how
// to start one.
var errNoNode = errors.New("no edgebpf node is running")

// nodeInstance is an instance of a running node, resolved from the status records.
type nodeInstance struct {
	node     statusNode
	instance netsetup.InstanceStatus
}

// findInstance resolves SERVICE[/INSTANCE] among the nodes running on this machine; INSTANCE
// is an index or a name and defaults to 0, and a non-empty node restricts the search to the
// node of that name. Without any running node it returns errNoNode.
func findInstance(spec, node string) (nodeInstance, error) {
	nodes, err := liveNodes()
	if len(nodes) == 0 {
		if err != nil {
			return nodeInstance{}, err
		}
		return nodeInstance{}, errNoNode
	}
	return matchInstance(nodes, spec, node)
}

// matchInstance is findInstance on a given list of nodes.
func matchInstance(nodes []statusNode, spec, node string) (nodeInstance, error) {
	svc, inst, _ := strings.Cut(spec, "/")
	if inst == "" {
		inst = "0"
	}
	var matches []nodeInstance
	named := false
	for _, n := range nodes {
		if node != "" && n.Name != node {
			continue
		}
		named = true
		for _, s := range n.Services {
			if s.Name != svc {
				continue
			}
			i := 0
			for _, in := range s.Instances {
				if in.Namespace == "" {
					continue // another worker's instance: it runs elsewhere
				}
				if in.Name == inst || strconv.Itoa(i) == inst || in.Name == svc+"-"+inst {
					matches = append(matches, nodeInstance{node: n, instance: in})
					break
				}
				i++
			}
		}
	}
	switch {
	case !named:
		return nodeInstance{}, fmt.Errorf("no node %s is running: see `edgebpf status`", node)
	case len(matches) == 0:
		return nodeInstance{}, fmt.Errorf("no instance %s of service %s on a running node: see `edgebpf status`", inst, svc)
	case len(matches) == 1:
		return matches[0], nil
	}
	return nodeInstance{}, fmt.Errorf("service %s runs on %d nodes: choose one with --node (see `edgebpf status`)", svc, len(matches))
}
