package tunnel

import (
	"net/netip"

	"github.com/edgebpf/edgebpf/netsetup"
)

// underlayOf reads the worker's underlay from the node; false for a standalone node.
func underlayOf(node *netsetup.Node) (Underlay, bool) {
	u, ok := node.Underlay()
	if !ok {
		return Underlay{}, false
	}
	peers := make([]netip.Addr, 0, len(u.Peers))
	for _, p := range u.Peers {
		peers = append(peers, p.IP)
	}
	return Underlay{Link: u.Link, Index: u.Index, IP: u.IP, MTU: u.MTU, Peers: peers}, true
}
