package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/edgebpf/edgebpf/netsetup"
)

// joinOptions are the flags of `edgebpf node` that make the node one worker of a cluster
// whose workers run on separate hosts joined by a real interface (the underlay).
type joinOptions struct {
	underlay   string   // --underlay IFACE
	underlayIP string   // --underlay-ip ADDR/PREFIX
	worker     int      // --worker I
	peers      []string // --peer I=ADDR, repeatable and comma-separated
	placement  []string // --placement SERVICE@I, repeatable and comma-separated
	cluster    string   // --cluster NAME
	peerWait   time.Duration
}

const joinHelp = `
Across hosts: with --underlay IFACE the node is worker --worker I of a cluster whose other
workers run on other hosts (--peer, one per other worker, by index), joined by the network on
IFACE. The worker reaches IFACE through a macvlan child created inside the worker's namespace,
with its own address --underlay-ip on that network (not the host's address: the host's
addresses, routes and links stay as they were). Worker I's instances take 10.18.I.0/24. Give
every host the same --names, --placement, --peer set and --cluster: each computes the same
cluster-wide table (service, instance and namespace IPs, node IPs) from them, so every worker's
registry knows every instance, its own and the peers'. The node waits up to --peer-wait for
every peer to answer ARP on the underlay before it is ready; start the nodes at about the same
time. Services and instances cannot be added through the API on a worker of such a cluster.`

func (j *joinOptions) register(f *pflag.FlagSet) {
	f.StringVar(&j.underlay, "underlay", "", "join a cluster across hosts over this host's interface IFACE (the network between the hosts)")
	f.StringVar(&j.underlayIP, "underlay-ip", "", "with --underlay: this worker's node IP ADDR/PREFIX on that network, an address no host uses (e.g. 10.10.1.101/24)")
	f.IntVar(&j.worker, "worker", 0, "with --underlay: this host's worker index; its instances take 10.18.INDEX.0/24")
	f.StringSliceVar(&j.peers, "peer", nil, "with --underlay: another worker as INDEX=ADDR (or CLUSTER-wINDEX=ADDR), its --underlay-ip address; repeat or separate with commas, one per other worker")
	f.StringSliceVar(&j.placement, "placement", nil, "with --underlay: SERVICE@INDEX puts one instance of SERVICE on worker INDEX; repeat or separate with commas (default: --instances of every service on every worker)")
	f.StringVar(&j.cluster, "cluster", "c", "with --underlay: the cluster's name; worker I is named NAME-wI")
	f.DurationVar(&j.peerWait, "peer-wait", time.Minute, "with --underlay: how long to wait for every peer to answer")
}

// enabled says whether the node joins a cluster across hosts.
func (j joinOptions) enabled() bool { return j.underlay != "" }

// config turns the flags into the member's configuration, or a usage error. It checks only
// the flags; JoinConfig.CheckDevice checks the interface.
func (j joinOptions) config(services []string, instances, mtu int) (*netsetup.JoinConfig, error) {
	if !j.enabled() {
		if j.underlayIP != "" || len(j.peers) > 0 || len(j.placement) > 0 || j.worker != 0 {
			return nil, usageError("--underlay-ip, --worker, --peer and --placement need --underlay IFACE")
		}
		return nil, nil
	}
	ip, err := netip.ParsePrefix(j.underlayIP)
	if err != nil {
		return nil, usageError("--underlay-ip %q is not ADDRESS/PREFIX (e.g. 10.10.1.101/24): %w", j.underlayIP, err)
	}
	if j.peerWait <= 0 {
		return nil, usageError("--peer-wait %s must be positive", j.peerWait)
	}
	nodeIPs, err := j.nodeIPs(ip.Addr())
	if err != nil {
		return nil, err
	}
	cfg := &netsetup.JoinConfig{
		Cluster: netsetup.ClusterConfig{Name: j.cluster, MTU: mtu},
		Worker:  j.worker, Device: j.underlay, UnderlayIP: ip, NodeIPs: nodeIPs, Services: services,
	}
	for _, s := range j.placement {
		p, err := netsetup.ParsePlacement(s)
		if err != nil {
			return nil, usageError("--placement: %w", err)
		}
		cfg.Placement = append(cfg.Placement, p)
	}
	if len(j.placement) == 0 {
		for w := range nodeIPs {
			for _, s := range services {
				for range instances {
					cfg.Placement = append(cfg.Placement, netsetup.Placement{Service: s, Worker: w})
				}
			}
		}
	}
	if err := cfg.Validate(); err != nil {
		return nil, usageError("%w", err)
	}
	return cfg, nil
}

// nodeIPs orders this worker's and the peers' addresses by worker index; every index from 0
// to the number of peers must be given exactly once.
func (j joinOptions) nodeIPs(self netip.Addr) ([]netip.Addr, error) {
	n := len(j.peers) + 1
	if j.worker < 0 || j.worker >= n {
		return nil, usageError("--worker %d does not exist: with %d --peer the workers are 0 to %d", j.worker, len(j.peers), n-1)
	}
	ips := make([]netip.Addr, n)
	ips[j.worker] = self
	for _, p := range j.peers {
		name, addr, ok := strings.Cut(p, "=")
		ip, err := netip.ParseAddr(addr)
		if !ok || err != nil {
			return nil, usageError("--peer %q is not INDEX=ADDRESS (e.g. 1=10.10.1.102)", p)
		}
		i, err := strconv.Atoi(strings.TrimPrefix(name, j.cluster+"-w"))
		switch {
		case err != nil || i < 0 || i >= n:
			return nil, usageError("--peer %q names no worker: with %d --peer the workers are 0 to %d (or %s-w0 ...)", p, len(j.peers), n-1, j.cluster)
		case i == j.worker:
			return nil, usageError("--peer %q is this host's own worker %d (--worker)", p, i)
		case ips[i].IsValid():
			return nil, usageError("--peer names worker %d twice", i)
		}
		ips[i] = ip
	}
	return ips, nil
}

// checkHost checks, before anything is created, what the flags ask of this host: with
// --underlay, the interface (it must exist, be up and carry the overlay's MTU plus 28 bytes).
func (p nodePlan) checkHost() error {
	if p.join == nil {
		return nil
	}
	if _, err := p.join.CheckDevice(); err != nil {
		return usageError("%w", err)
	}
	return nil
}

// newWorker builds the node: a standalone one, or with --underlay this host's worker of a
// cluster, which it joins and whose peers it waits for. populate adds the services and
// instances once the data plane is deployed.
func newWorker(ctx context.Context, sess *netsetup.Session, o nodeOptions, p nodePlan, log *slog.Logger) (node *netsetup.Node, populate func() error, err error) {
	if p.join == nil {
		node, err := netsetup.NewNode(sess, p.cfg)
		if err != nil {
			return nil, nil, err
		}
		return node, func() error { return addServices(node, p.services, o.instances) }, nil
	}
	m, err := netsetup.JoinCluster(sess, *p.join)
	if err != nil {
		return nil, nil, err
	}
	u, _ := m.Node.Underlay()
	log.Info("joined the underlay; waiting for the peers", "worker", m.Node.Name(), "device", p.join.Device,
		"node_ip", u.IP, "peers", len(u.Peers), "wait", o.join.peerWait)
	if err := m.ProbePeers(ctx, o.join.peerWait); err != nil {
		if errors.Is(err, netsetup.ErrPeerSilent) && ctx.Err() == nil {
			return nil, nil, &exitError{code: 2, err: err}
		}
		return nil, nil, fmt.Errorf("wait for the peers: %w", err)
	}
	return m.Node, m.Populate, nil
}

// addServices adds a standalone node's services, each with its instances.
func addServices(node *netsetup.Node, services []string, instances int) error {
	for _, name := range services {
		if _, err := node.AddService(name); err != nil {
			return err
		}
		for range instances {
			if _, err := node.AddInstance(name); err != nil {
				return err
			}
		}
	}
	return nil
}
