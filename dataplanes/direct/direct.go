// Package direct is the data plane without a proxy: a client addresses the server instance's
// namespace IP and packets cross only the veth pairs and the node's bridge. It is the
// physical limit every other data plane is measured against.
//
// On a worker of a cluster, direct also routes between the workers over the underlay,
// without a tunnel: the worker namespace gets a route to every peer's subnet via the peer's
// node IP on the underlay link, and forwarding. A client then sends straight to the
// namespace IP of a server on another worker; the packet crosses its bridge, its worker, the
// underlay and the server's worker unchanged, which is the physical limit across workers.
package direct

import (
	"context"
	"errors"
	"fmt"
	"image/color"
	"net/netip"
	"sync"

	"github.com/edgebpf/edgebpf/dataplanes"
	"github.com/edgebpf/edgebpf/netsetup"
	"github.com/edgebpf/edgebpf/subject"
)

// Spec describes the direct data plane for the registry (dataplanes/builtin).
var Spec = dataplanes.Spec{
	Spec: subject.Spec{
		Kind: subject.DataPlane, Name: "direct", Order: 0,
		Description: "no proxy: clients address the server instance's namespace IP (the physical limit)",
		Colour:      color.RGBA{0x4d, 0x4d, 0x4d, 0xff},
	},
	New:       func() dataplanes.DataPlane { return New() },
	CrossNode: true, // across workers: see Deploy on a cluster's worker
}

// DataPlane is the direct data plane.
type DataPlane struct {
	mu     sync.Mutex
	node   *netsetup.Node
	routes *peerRoutes // nil on a standalone node
	// unforward puts back the forwarding sysctls Deploy changed on a worker.
	unforward func() error
}

// New returns an undeployed direct data plane.
func New() *DataPlane { return &DataPlane{} }

// Name returns "direct".
func (*DataPlane) Name() string { return "direct" }

// Deploy remembers the node; the bridge already connects its instances. On a worker of a
// cluster it turns forwarding on and routes every peer's subnet via the peer's node IP. On
// failure it undoes what it did.
func (d *DataPlane) Deploy(_ context.Context, node *netsetup.Node) error {
	if node == nil {
		return errors.New("deploy direct: no node")
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.node != nil {
		return errors.New("deploy direct: already deployed")
	}
	d.node = node
	u, ok := node.Underlay()
	if !ok {
		return nil
	}
	err := d.deployWorker(node, u)
	if err != nil {
		return errors.Join(fmt.Errorf("deploy direct on worker %s: %w", node.Name(), err), d.closeLocked())
	}
	return nil
}

func (d *DataPlane) deployWorker(node *netsetup.Node, u netsetup.UnderlayInfo) (err error) {
	if d.unforward, err = node.EnableForwarding(); err != nil {
		return err
	}
	d.routes = &peerRoutes{ns: node.NS, link: u.Index}
	return d.routes.add(u.Peers)
}

// Target returns the namespace IP of the service's first instance, on this worker or
// another: without a proxy there is no service IP to address.
func (d *DataPlane) Target(svc netsetup.Service) (netip.Addr, error) {
	d.mu.Lock()
	node := d.node
	d.mu.Unlock()
	if node == nil {
		return netip.Addr{}, errors.New("direct data plane is not deployed")
	}
	ins := node.Registry.Instances(svc.Name)
	if len(ins) == 0 {
		return netip.Addr{}, fmt.Errorf("service %s has no instance to address directly", svc.Name)
	}
	return ins[0].NSIP, nil
}

// Settings describes the data plane; on a worker, also how it crosses to the others.
func (d *DataPlane) Settings() map[string]string {
	s := map[string]string{"addressing": "namespace IP", "proxy": "none"}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.routes != nil {
		s["cross_worker"] = "routed over the underlay without a tunnel: each peer's subnet via its node IP on " + netsetup.UnderlayLink
	}
	return s
}

// Close removes the peer routes and restores the forwarding sysctls on a worker, and
// forgets the node. It is idempotent.
func (d *DataPlane) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.closeLocked()
}

func (d *DataPlane) closeLocked() error {
	var errs []error
	if d.routes != nil {
		errs = append(errs, d.routes.remove())
		d.routes = nil
	}
	if d.unforward != nil {
		errs = append(errs, d.unforward())
		d.unforward = nil
	}
	d.node = nil
	return errors.Join(errs...)
}
