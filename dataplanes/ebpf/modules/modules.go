// Package modules is the catalogue of the eBPF modules compiled into edgebpf: the counter,
// the firewall, the service proxy and the tunnel between a cluster's workers, each a package
// of its own with a Factory. Whoever starts an eBPF manager passes it this catalogue
// (manager.New(node, modules.Catalogue())), so which modules a node offers is visible at the
// call, not decided by which packages some file imports for their side effects.
//
// Note: module packages used to register themselves with the manager from init, reached
// through blank imports repeated wherever a manager was started; a forgotten import meant a
// module silently missing, and the registry was mutable package state shared by every manager
// in the process (and every test).
package modules

import (
	"github.com/edgebpf/edgebpf/dataplanes/ebpf/manager"
	"github.com/edgebpf/edgebpf/dataplanes/ebpf/modules/counter"
	"github.com/edgebpf/edgebpf/dataplanes/ebpf/modules/firewall"
	"github.com/edgebpf/edgebpf/dataplanes/ebpf/modules/proxy"
	"github.com/edgebpf/edgebpf/dataplanes/ebpf/modules/tunnel"
)

// Catalogue returns every module by the name the REST API creates it with. Each call returns
// a new map, so a caller may add or remove modules without affecting anyone else.
func Catalogue() manager.Catalogue {
	return manager.Catalogue{
		"counter":  counter.Factory,
		"firewall": firewall.Factory,
		"proxy":    proxy.Factory,
		"tunnel":   tunnel.Factory,
	}
}
