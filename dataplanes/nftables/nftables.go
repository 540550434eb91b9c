// Package nftables is the nftables data plane: service IPs translated the way kube-proxy's
// nftables mode does it, programmed over netlink from Go (no nft binary), in the node
// namespace. It is what operators run today, the baseline between the user-space proxy and
// the eBPF proxy.
//
// One table, ip edgebpf, holds a verdict map from every service IP and instance IP to a
// chain. A service's chain picks an instance round-robin (numgen inc mod N with a verdict
// map, one counter per service); an instance's chain DNATs to its namespace IP. A
// postrouting rule SNATs proxied sessions to the client's instance IP (a map from namespace
// IP to instance IP), so the server sees the instance IP. Conntrack keeps a session on its
// instance and reverses both translations on replies. A service without instances, and any
// address of the service range that names nothing, is refused: TCP with a reset, anything
// else with ICMP port unreachable. ICMP echo to a service IP is balanced like a session and
// answered by the chosen instance.
//
// Every registry change is one nftables transaction. When an instance goes, its sessions
// end: their conntrack entries are deleted and their 5-tuples are put in a set that refuses
// their next packets for two minutes (a TCP SYN with the same tuple starts a new session),
// so no packet is sent towards the namespace that is gone and no other instance answers an
// old session.
//
// On a worker of a cluster the data plane joins the workers with the kernel's VXLAN device,
// as flannel's vxlan backend does: one device per worker (VNI 1, dstport 4789, local = the
// node IP, nolearning, MTU = the underlay's minus 50) with, per peer, a route to the peer's
// subnet via the peer's VTEP address onlink, a permanent neighbour (VTEP IP -> VTEP MAC) and
// an FDB entry (VTEP MAC -> node IP). The registry's remote instances get the same chains as
// local ones, so a session is DNATed to a namespace IP on another worker on the client's
// worker and crosses the VXLAN; it is SNATed there to the client's instance IP, which only
// the client's worker can undo, so every worker routes each remote instance's instance IP
// (/32) to that instance's worker's VTEP, and the server's replies go back the way they came.
// The receiving worker only forwards. A 1450-byte overlay packet becomes exactly 1500 bytes
// on the underlay; the outer DF is clear (the device's default, as flannel's).
//
// Note: a collect-metadata (external) VXLAN device was considered. It carries no peers of its
// own: every packet needs its tunnel key from a route's lightweight-tunnel encap or from a
// BPF program, which is how Cilium runs VXLAN and what the eBPF tunnel module does with its
// own wire format. The baseline is what flannel-style clusters (k3s's default at the edge)
// run: a plain device with static neighbours and FDB, nothing programmable on the path.
//
// Note: deleting the conntrack entries alone, as kube-proxy does for UDP, was tried: the
// next datagram of the old session is then a new session and another instance answers it.
//
// Note: kube-proxy writes each service's balancing map inline (anonymous). That was tried:
// installing 10,000 services x 4 in one batch took 119 s, because the kernel walks the whole
// transaction to bind every anonymous set; named per-service maps take 8 s. A commit that
// adds a goto makes the kernel validate every chain reachable from the table, so with
// 10,000 services one change (an instance added or removed) costs about 50 - 140 ms, and
// installing them one batch per service 346 s (go test -bench . ./dataplanes/nftables/).
package nftables

import (
	"context"
	"errors"
	"fmt"
	"image/color"
	"maps"
	"net/netip"
	"sync"

	"github.com/edgebpf/edgebpf/dataplanes"
	"github.com/edgebpf/edgebpf/internal/features"
	"github.com/edgebpf/edgebpf/netsetup"
	"github.com/edgebpf/edgebpf/subject"
)

// Spec describes the nftables data plane for the registry (dataplanes/builtin).
var Spec = dataplanes.Spec{
	Spec: subject.Spec{
		Kind: subject.DataPlane, Name: "nftables", Order: 40,
		Description: "kube-proxy-style nftables DNAT/SNAT (what operators use today)",
		Needs:       []features.Name{features.NFTables},
		Colour:      color.RGBA{0x2c, 0xa0, 0x2c, 0xff},
	},
	New:       func() dataplanes.DataPlane { return New() },
	CrossNode: true, // across workers: see Deploy on a cluster's worker
}

// DataPlane is the nftables data plane on one node.
type DataPlane struct {
	mu          sync.Mutex
	node        *netsetup.Node
	rules       *ruleset
	unsubscribe func()
	// overlay is the VXLAN overlay to the other workers; nil on a standalone node.
	overlay *overlay
	// unforward puts back the node namespace's forwarding sysctls Deploy changed.
	unforward func() error
}

// New returns an undeployed nftables data plane.
func New() *DataPlane { return &DataPlane{} }

// Name returns "nftables".
func (*DataPlane) Name() string { return "nftables" }

// Deploy creates the table in the node namespace, installs the node's current services and
// subscribes to its registry. On failure it undoes what it did.
func (d *DataPlane) Deploy(_ context.Context, node *netsetup.Node) error {
	if node == nil {
		return errors.New("deploy nftables: no node")
	}
	d.mu.Lock()
	if d.node != nil {
		d.mu.Unlock()
		return errors.New("deploy nftables: already deployed")
	}
	err := d.deploy(node)
	d.mu.Unlock()
	if err != nil {
		return errors.Join(fmt.Errorf("deploy nftables on node %s: %w", node.Name(), err), d.Close())
	}
	return nil
}

func (d *DataPlane) deploy(node *netsetup.Node) (err error) {
	if !node.NS.Handle().IsOpen() {
		return errors.New("the node is closed")
	}
	d.node = node
	// The node namespace routes client -> service traffic back out of the bridge it came in
	// by: forwarding on, no ICMP redirects. br_netfilter is not needed: instances send to the
	// bridge's MAC (their gateway), so the packets are routed, not bridged.
	if d.unforward, err = node.EnableForwarding(); err != nil {
		return err
	}
	if u, ok := node.Underlay(); ok {
		if d.overlay, err = newOverlay(node, u); err != nil {
			return err
		}
	}
	if d.rules, err = newRuleset(int(node.NS.Handle()), node.Config().ServiceRange); err != nil {
		return err
	}
	// Subscribe before reading the registry, so nothing created in between is missed: its
	// events wait for d.mu, and handle ignores what is already installed.
	d.unsubscribe = node.Registry.Subscribe(d.handle)
	for _, svc := range node.Registry.Services() {
		if err := d.addService(svc); err != nil {
			return err
		}
		instances := node.Registry.Instances(svc.Name)
		for _, in := range instances {
			if err := d.addRemote(in); err != nil {
				return err
			}
		}
		if err := d.sync(svc, instances); err != nil {
			return err
		}
	}
	return nil
}

// handle applies one registry event.
func (d *DataPlane) handle(ev netsetup.Event) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.rules == nil {
		return nil
	}
	switch ev.Kind {
	case netsetup.ServiceCreated:
		return d.addService(ev.Service)
	case netsetup.ServiceRemoved:
		left := d.rules.installed[ev.Service.IP] // normally none: instances go first
		err := d.rules.removeService(ev.Service.IP)
		for _, b := range left {
			err = errors.Join(err, d.endSessions(b.NSIP), d.removeRemote(b.InstanceIP))
		}
		return err
	case netsetup.InstanceCreated:
		cur := d.rules.installed[ev.Service.IP]
		b := backendOf(ev.Instance)
		for _, x := range cur {
			if x == b {
				return nil
			}
		}
		if err := d.addRemote(ev.Instance); err != nil {
			return err
		}
		if _, err := d.rules.setBackends(ev.Service.IP, append(cur[:len(cur):len(cur)], b)); err != nil {
			return errors.Join(err, d.removeRemote(b.InstanceIP))
		}
		return nil
	case netsetup.InstanceRemoved:
		cur := d.rules.installed[ev.Service.IP]
		if cur == nil {
			return nil
		}
		b := backendOf(ev.Instance)
		next := make([]backend, 0, len(cur))
		for _, x := range cur {
			if x != b {
				next = append(next, x)
			}
		}
		if len(next) == len(cur) {
			return nil
		}
		if _, err := d.rules.setBackends(ev.Service.IP, next); err != nil {
			return err
		}
		return errors.Join(d.endSessions(b.NSIP), d.removeRemote(b.InstanceIP))
	}
	return nil
}

// addService checks the service's policy and installs it without instances.
func (d *DataPlane) addService(svc netsetup.Service) error {
	if svc.Balancing != netsetup.RoundRobin && svc.Balancing != "" {
		return fmt.Errorf("service %s: balancing %q is not supported by the nftables data plane: use %q", svc.Name, svc.Balancing, netsetup.RoundRobin)
	}
	if err := d.rules.addService(svc.IP); err != nil {
		return fmt.Errorf("service %s: %w", svc.Name, err)
	}
	return nil
}

// sync makes the service's installed instances those of the registry, in its order.
func (d *DataPlane) sync(svc netsetup.Service, instances []*netsetup.Instance) error {
	bs := make([]backend, len(instances))
	for i, in := range instances {
		bs[i] = backendOf(in)
	}
	removed, err := d.rules.setBackends(svc.IP, bs)
	if err != nil {
		return fmt.Errorf("service %s: %w", svc.Name, err)
	}
	for _, b := range removed {
		err = errors.Join(err, d.endSessions(b.NSIP))
	}
	return err
}

// endSessions ends the sessions of a removed instance: after the batch that took it out of
// balancing, the original tuples of sessions to it go into @ended, then the conntrack entries
// to and from it are deleted. Until then its sessions still reach it: the registry announces
// a removal before the namespace goes.
func (d *DataPlane) endSessions(nsip netip.Addr) error {
	h, err := d.node.NS.Netlink()
	if err != nil {
		return err
	}
	defer h.Close()
	ct := conntrack{h}
	tuples, err := ct.sessionsTo(nsip)
	if err != nil {
		return err
	}
	if len(tuples) > 0 {
		if err := d.rules.endSessions(tuples); err != nil {
			return err
		}
	}
	_, err = ct.forget(nsip)
	return err
}

// addRemote routes a remote instance's instance IP to its worker; nothing on a standalone
// node or for a local instance.
func (d *DataPlane) addRemote(in *netsetup.Instance) error {
	if d.overlay == nil {
		return nil
	}
	return d.overlay.addRemote(in)
}

func (d *DataPlane) removeRemote(instanceIP netip.Addr) error {
	if d.overlay == nil {
		return nil
	}
	return d.overlay.removeRemote(instanceIP)
}

func backendOf(in *netsetup.Instance) backend {
	return backend{NSIP: in.NSIP, InstanceIP: in.InstanceIP}
}

// Target returns the service IP: clients address services through the proxy.
func (d *DataPlane) Target(svc netsetup.Service) (netip.Addr, error) {
	if !svc.IP.IsValid() {
		return netip.Addr{}, fmt.Errorf("service %s has no service IP", svc.Name)
	}
	return svc.IP, nil
}

// Settings describes the data plane for meta.json; on a worker of a cluster, also the VXLAN
// overlay to the other workers.
func (d *DataPlane) Settings() map[string]string {
	s := map[string]string{
		"proxy":      "nftables (kube-proxy nftables mode style)",
		"table":      "ip " + TableName + " in the node namespace",
		"balancing":  "round-robin: numgen inc mod N verdict map per service",
		"dnat":       "per-instance chain, dnat to the namespace IP",
		"snat":       "to the client's instance IP (map namespace IP -> instance IP)",
		"sessions":   "conntrack; removed instance: entries deleted, 5-tuples refused for 2m",
		"no_backend": "tcp reset, otherwise icmp port unreachable",
		"icmp_echo":  "balanced and answered by an instance",
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.overlay != nil {
		maps.Copy(s, d.overlay.settings())
	}
	return s
}

// Close unsubscribes, deletes the table and restores the sysctls Deploy changed. It is
// idempotent.
func (d *DataPlane) Close() error {
	// Unsubscribe without holding d.mu: an event being delivered holds the registry's
	// subscriber lock while it waits for d.mu.
	d.mu.Lock()
	unsubscribe := d.unsubscribe
	d.unsubscribe = nil
	d.mu.Unlock()
	if unsubscribe != nil {
		unsubscribe()
	}

	d.mu.Lock()
	defer d.mu.Unlock()
	var errs []error
	if d.rules != nil {
		errs = append(errs, d.rules.destroy())
		d.rules = nil
	}
	if d.overlay != nil {
		errs = append(errs, d.overlay.destroy())
		d.overlay = nil
	}
	if d.unforward != nil {
		// It restores nothing once the node's namespace is gone.
		errs = append(errs, d.unforward())
		d.unforward = nil
	}
	d.node = nil
	return errors.Join(errs...)
}
