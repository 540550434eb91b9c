// Package direct is the data plane without a proxy: a client addresses the server instance's
// namespace IP and packets cross only the veth pairs and the node's bridge. It is the
// physical limit every other data plane is measured against.
package direct

import (
	"context"
	"errors"
	"fmt"
	"image/color"
	"net/netip"

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
	New: func() dataplanes.DataPlane { return New() },
}

// DataPlane is the direct data plane.
type DataPlane struct {
	node *netsetup.Node
}

// New returns an undeployed direct data plane.
func New() *DataPlane { return &DataPlane{} }

// Name returns "direct".
func (*DataPlane) Name() string { return "direct" }

// Deploy remembers the node; the bridge already connects its instances.
func (d *DataPlane) Deploy(_ context.Context, node *netsetup.Node) error {
	if node == nil {
		return errors.New("deploy direct: no node")
	}
	d.node = node
	return nil
}

// Target returns the namespace IP of the service's first instance: without a proxy there is
// no service IP to address.
func (d *DataPlane) Target(svc netsetup.Service) (netip.Addr, error) {
	if d.node == nil {
		return netip.Addr{}, errors.New("direct data plane is not deployed")
	}
	ins := d.node.Registry.Instances(svc.Name)
	if len(ins) == 0 {
		return netip.Addr{}, fmt.Errorf("service %s has no instance to address directly", svc.Name)
	}
	return ins[0].NSIP, nil
}

// Settings describes the data plane.
func (*DataPlane) Settings() map[string]string {
	return map[string]string{"addressing": "namespace IP", "proxy": "none"}
}

// Close forgets the node.
func (d *DataPlane) Close() error {
	d.node = nil
	return nil
}
