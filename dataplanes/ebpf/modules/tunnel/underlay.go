package tunnel

import "github.com/edgebpf/edgebpf/netsetup"

// underlayOf reads the worker's underlay from the node; false for a standalone node.
func underlayOf(node *netsetup.Node) (Underlay, bool) { return Underlay{}, false }
