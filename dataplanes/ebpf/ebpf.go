// Package ebpf is the `ebpf` data plane: the eBPF manager on the node with the proxy
// module deployed, so that service IPs are translated in the kernel (dataplanes/ebpf/modules/proxy)
// and other modules (counter, firewall) can be chained with it through the manager's API. On a
// worker of a cluster it deploys the tunnel module after the proxy
// (dataplanes/ebpf/modules/tunnel), so that instances on other workers are reached through
// Oakestra's UDP tunnel, in the kernel at both ends.
package ebpf

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"image/color"
	"net/netip"

	"github.com/edgebpf/edgebpf/dataplanes"
	"github.com/edgebpf/edgebpf/dataplanes/ebpf/manager"
	"github.com/edgebpf/edgebpf/dataplanes/ebpf/modules"
	"github.com/edgebpf/edgebpf/dataplanes/ebpf/modules/proxy"
	"github.com/edgebpf/edgebpf/internal/features"
	"github.com/edgebpf/edgebpf/netsetup"
	"github.com/edgebpf/edgebpf/subject"
)

// Spec describes the ebpf data plane for the registry (dataplanes/builtin).
var Spec = dataplanes.Spec{
	Spec: subject.Spec{
		Kind: subject.DataPlane, Name: "ebpf", Order: 30,
		Description: "the eBPF manager with the proxy module on TCX (Riegel's eBPF proxy)",
		Needs:       []features.Name{features.BPF, features.BTF, features.TCX},
		Colour:      color.RGBA{0xff, 0x7f, 0x0e, 0xff},
	},
	New:       func() dataplanes.DataPlane { return New() },
	CrossNode: true, // across workers: see Deploy on a cluster's worker
}

// DataPlane is the eBPF data plane.
type DataPlane struct {
	chain       manager.Chain
	m           *manager.Manager
	proxy       manager.Info
	proxyConfig json.RawMessage
	tunnel      bool // the tunnel module is deployed (a worker of a cluster)
}

// New returns an undeployed eBPF data plane.
func New() *DataPlane { return &DataPlane{} }

// NewWithProxyConfig returns an undeployed eBPF data plane whose proxy module gets config (a
// proxy.Config as JSON), as `POST /ebpf` would pass it.
func NewWithProxyConfig(config json.RawMessage) *DataPlane { return &DataPlane{proxyConfig: config} }

// SetChain sets how the manager chains the modules (manager.DefaultChain unless set); before
// Deploy.
func (d *DataPlane) SetChain(c manager.Chain) { d.chain = c }

// Name returns "ebpf".
func (*DataPlane) Name() string { return "ebpf" }

// Deploy starts the manager on node and creates the proxy module, and on a worker of a
// cluster the tunnel module after it, so that instances on other workers are reached.
func (d *DataPlane) Deploy(_ context.Context, node *netsetup.Node) error {
	m, err := manager.New(node, modules.Catalogue(), manager.WithChain(d.chainMode()))
	if err != nil {
		return err
	}
	inf, err := m.Create("proxy", d.proxyConfig)
	if err != nil {
		return errors.Join(fmt.Errorf("deploy ebpf proxy: %w", err), m.Close())
	}
	if _, ok := node.Underlay(); ok {
		if _, err := m.Create("tunnel", nil); err != nil {
			return errors.Join(fmt.Errorf("deploy ebpf tunnel: %w", err), m.Close())
		}
		d.tunnel = true
	}
	d.m, d.proxy = m, inf
	return nil
}

// Target returns the service IP: the proxy translates it.
func (d *DataPlane) Target(svc netsetup.Service) (netip.Addr, error) {
	if d.m == nil {
		return netip.Addr{}, errors.New("ebpf data plane is not deployed")
	}
	return svc.IP, nil
}

// Manager returns the node's eBPF manager, for `edgebpf node` to serve its API.
func (d *DataPlane) Manager() *manager.Manager { return d.m }

// Proxy returns the proxy module, or nil before Deploy.
func (d *DataPlane) Proxy() *proxy.Proxy {
	if d.m == nil {
		return nil
	}
	mod, ok := d.m.Module(d.proxy.ID)
	if !ok {
		return nil
	}
	p, _ := mod.(*proxy.Proxy)
	return p
}

// ProgramRuns returns the run statistics of the modules' programs (dataplanes.ProgramRunner).
func (d *DataPlane) ProgramRuns() ([]manager.ProgramRun, error) {
	if d.m == nil {
		return nil, errors.New("ebpf data plane is not deployed")
	}
	return d.m.ProgramRuns()
}

func (d *DataPlane) chainMode() manager.Chain {
	if d.chain == "" {
		return manager.DefaultChain
	}
	return d.chain
}

// Settings describes the data plane; "chain" is the manager's chain mode.
func (d *DataPlane) Settings() map[string]string {
	proxy := "eBPF module (TCX ingress on bridge-side veths)"
	if d.chainMode() == manager.ChainDispatcher {
		proxy = "eBPF module (in the chain dispatcher on the TCX ingress of bridge-side veths)"
	}
	s := map[string]string{"proxy": proxy, "delivery": "bpf_redirect_peer", "chain": string(d.chainMode()),
		"sessions": "LRU 5-tuple, both directions", "install": "lazy (first packet via upcall)"}
	if d.tunnel {
		s["tunnel"] = "eBPF module: UDP 50103, Oakestra's wire format (encap in the proxy, bpf_redirect_neigh; decap on the underlay's TCX ingress)"
	}
	return s
}

// Close deletes the modules and stops the manager. It is idempotent.
func (d *DataPlane) Close() error {
	if d.m == nil {
		return nil
	}
	err := d.m.Close()
	d.m = nil
	return err
}
