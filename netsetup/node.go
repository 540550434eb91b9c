package netsetup

import (
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os/exec"
	"strconv"
	"sync"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// NodeConfig describes an emulated worker node. Zero fields take the defaults below, which
// follow Oakestra's worker-node addressing (reference.md §1), except that the node subnet is
// a /24 rather than Oakestra's /26 so that a node can hold up to 253 instances.
type NodeConfig struct {
	Name         string       // default "node0"
	Subnet       netip.Prefix // namespace IPs; bridge takes the first address; default 10.18.0.0/24
	ServiceRange netip.Prefix // service and instance IPs; default 10.30.0.0/16
	MTU          int          // on the bridge and every veth; default 1450
}

// Defaults for NodeConfig.
var (
	DefaultSubnet       = netip.MustParsePrefix("10.18.0.0/24")
	DefaultServiceRange = netip.MustParsePrefix("10.30.0.0/16")
)

// DefaultMTU leaves room for Oakestra's UDP tunnel, as Oakestra does.
const DefaultMTU = 1450

func (c NodeConfig) withDefaults() NodeConfig {
	if c.Name == "" {
		c.Name = "node0"
	}
	if !c.Subnet.IsValid() {
		c.Subnet = DefaultSubnet
	}
	if !c.ServiceRange.IsValid() {
		c.ServiceRange = DefaultServiceRange
	}
	if c.MTU == 0 {
		c.MTU = DefaultMTU
	}
	return c
}

// Resolved returns the configuration with its defaults applied.
func (c NodeConfig) Resolved() NodeConfig { return c.withDefaults() }

// Validate checks a configuration after defaults are applied.
func (c NodeConfig) Validate() error {
	c = c.withDefaults()
	if err := validName(c.Name); err != nil {
		return fmt.Errorf("node name: %w", err)
	}
	if c.MTU < 576 || c.MTU > 65535 {
		return fmt.Errorf("mtu %d is out of range: use 576 to 65535", c.MTU)
	}
	if c.Subnet.Overlaps(c.ServiceRange) {
		return fmt.Errorf("node subnet %s overlaps the service range %s: choose disjoint prefixes", c.Subnet, c.ServiceRange)
	}
	for _, p := range []netip.Prefix{c.Subnet, c.ServiceRange} {
		if _, err := newPool(p); err != nil {
			return err
		}
	}
	return nil
}

// Node is an emulated worker node: a namespace holding a Linux bridge, with one namespace
// per service instance joined to the bridge by a veth pair.
type Node struct {
	cfg      NodeConfig
	sess     *Session
	NS       *Namespace
	Bridge   string
	BridgeIP netip.Addr
	Registry *Registry

	mu       sync.Mutex // serialises topology changes
	nsIPs    *pool
	svcIPs   *pool      // shared by the workers of a cluster
	index    *numbering // shared by the workers of a cluster
	nextVeth int
	underlay *UnderlayInfo
	closed   bool

	labelMu   sync.Mutex // guards dataplane and api, read while mu may be held
	dataplane string
	api       string
}

// NewNode builds a node inside sess. The node is removed by Close or with the session.
func NewNode(sess *Session, cfg NodeConfig) (n *Node, err error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	svcIPs, _ := newPool(cfg.withDefaults().ServiceRange)
	return newNode(sess, cfg, svcIPs, &numbering{next: map[string]int{}})
}

// newNode builds a node whose service and instance IPs come from svcIPs and whose instance
// numbers come from index: its own for a standalone node, the cluster's for a worker.
func newNode(sess *Session, cfg NodeConfig, svcIPs *pool, index *numbering) (n *Node, err error) {
	cfg = cfg.withDefaults()
	nsIPs, _ := newPool(cfg.Subnet)
	bridgeIP, _ := nsIPs.take()
	n = &Node{
		cfg: cfg, sess: sess, Bridge: LinkPrefix + "br0", BridgeIP: bridgeIP,
		Registry: newRegistry(), nsIPs: nsIPs, svcIPs: svcIPs, index: index,
	}
	n.NS, err = sess.NewNamespace(cfg.Name)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			err = errors.Join(err, sess.DeleteNamespace(n.NS))
		}
	}()
	h, err := n.NS.Netlink()
	if err != nil {
		return nil, err
	}
	defer h.Close()
	// A bridge without an address of its own takes its lowest port's MAC, which changes as
	// instances come and go and leaves the instances' neighbour entries for the gateway stale:
	// give it a fixed, locally administered one.
	mac := make(net.HardwareAddr, 6)
	if _, err := rand.Read(mac[2:]); err != nil {
		return nil, fmt.Errorf("make bridge MAC: %w", err)
	}
	mac[0], mac[1] = 0x02, 0xeb
	br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: n.Bridge, MTU: cfg.MTU, HardwareAddr: mac}}
	if err := h.LinkAdd(br); err != nil {
		return nil, fmt.Errorf("create bridge %s in %s: %w", n.Bridge, n.NS.Name, kernelLacks(err, "Linux bridges (CONFIG_BRIDGE, module bridge)"))
	}
	addr := &netlink.Addr{IPNet: ipNet(bridgeIP, cfg.Subnet.Bits())}
	if err := h.AddrAdd(br, addr); err != nil {
		return nil, fmt.Errorf("address bridge %s: %w", n.Bridge, err)
	}
	if err := h.LinkSetUp(br); err != nil {
		return nil, fmt.Errorf("set bridge %s up: %w", n.Bridge, err)
	}
	sess.addNode(n)
	if err := sess.updateNodes(); err != nil {
		sess.removeNode(n)
		return nil, err
	}
	sess.OnClose(n.Close)
	return n, nil
}

// Config returns the node's configuration with defaults applied.
func (n *Node) Config() NodeConfig { return n.cfg }

// Name returns the node's name.
func (n *Node) Name() string { return n.cfg.Name }

// SetLabels records which data plane runs on the node and where its API listens, for
// `edgebpf status`.
func (n *Node) SetLabels(dataplane, api string) error {
	n.labelMu.Lock()
	n.dataplane, n.api = dataplane, api
	n.labelMu.Unlock()
	return n.sess.updateNodes()
}

// AddService creates a service with the next free service IP. It has no instances yet.
func (n *Node) AddService(name string) (Service, error) {
	if err := validName(name); err != nil {
		return Service{}, fmt.Errorf("service name: %w", err)
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return Service{}, errors.New("node is closed")
	}
	if _, ok := n.Registry.Service(name); ok {
		return Service{}, fmt.Errorf("service %s already exists on node %s", name, n.cfg.Name)
	}
	if n.underlay != nil {
		return Service{}, fmt.Errorf("node %s is a worker of a cluster: add services through the cluster, which gives them one IP on every worker", n.cfg.Name)
	}
	ip, err := n.svcIPs.take()
	if err != nil {
		return Service{}, err
	}
	svc := Service{Name: name, IP: ip, Balancing: RoundRobin}
	if err := n.addServiceLocked(svc); err != nil {
		n.svcIPs.release(ip)
		return Service{}, err
	}
	return svc, nil
}

// addService adds a service whose IP the caller (the cluster) allocated.
func (n *Node) addService(svc Service) error {
	if err := validName(svc.Name); err != nil {
		return fmt.Errorf("service name: %w", err)
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return errors.New("node is closed")
	}
	return n.addServiceLocked(svc)
}

func (n *Node) addServiceLocked(svc Service) error {
	if err := n.Registry.addService(svc); err != nil {
		return err
	}
	if err := n.Registry.notify(Event{Kind: ServiceCreated, Service: svc}); err != nil {
		n.Registry.removeService(svc.Name)
		return err
	}
	return n.sess.updateNodes()
}

// addRemote announces an instance of another worker of the cluster.
func (n *Node) addRemote(in *Instance) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return errors.New("node is closed")
	}
	svc, ok := n.Registry.Service(in.Service)
	if !ok {
		return fmt.Errorf("service %s does not exist on node %s", in.Service, n.cfg.Name)
	}
	n.Registry.addInstance(in)
	if err := n.Registry.notify(Event{Kind: InstanceCreated, Service: svc, Instance: in}); err != nil {
		n.Registry.removeInstance(in)
		return err
	}
	return n.sess.updateNodes()
}

// AddInstance creates a new instance of the service: its namespace, a veth pair to the
// bridge, its addresses and default route via the bridge. Subscribers are told once it can
// carry traffic; if one refuses, the instance is removed again and the error returned.
func (n *Node) AddInstance(service string) (in *Instance, err error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return nil, errors.New("node is closed")
	}
	svc, ok := n.Registry.Service(service)
	if !ok {
		return nil, fmt.Errorf("service %s does not exist on node %s", service, n.cfg.Name)
	}
	nsIP, err := n.nsIPs.take()
	if err != nil {
		return nil, fmt.Errorf("instance of %s: node subnet: %w", service, err)
	}
	instIP, err := n.svcIPs.take()
	if err != nil {
		n.nsIPs.release(nsIP)
		return nil, fmt.Errorf("instance of %s: service range: %w", service, err)
	}
	idx := n.index.take(service)
	vethNo := n.nextVeth
	in = &Instance{
		Service: service, Index: idx, Name: service + "-" + strconv.Itoa(idx),
		NSIP: nsIP, InstanceIP: instIP, Node: n.cfg.Name,
		Veth: fmt.Sprintf("%sv0-%d", LinkPrefix, vethNo), Peer: fmt.Sprintf("%sv1-%d", LinkPrefix, vethNo),
	}
	if n.underlay != nil {
		in.NodeIP = n.underlay.IP
	}
	in.NS, err = n.sess.NewNamespace(n.cfg.Name + "-" + in.Name)
	if err != nil {
		n.nsIPs.release(nsIP)
		n.svcIPs.release(instIP)
		return nil, err
	}
	created := in // the named result is nil once an error is returned
	defer func() {
		if err != nil {
			err = errors.Join(err, n.sess.DeleteNamespace(created.NS))
			n.nsIPs.release(nsIP)
			n.svcIPs.release(instIP)
		}
	}()
	if err := n.plumb(in); err != nil {
		return nil, err
	}
	n.nextVeth++
	n.Registry.addInstance(in)
	if err := n.Registry.notify(Event{Kind: InstanceCreated, Service: svc, Instance: in}); err != nil {
		n.Registry.removeInstance(in)
		return nil, err
	}
	return in, n.sess.updateNodes()
}

// plumb creates the veth pair from the node namespace straight into the instance namespace
// (no link ever exists in the host namespace), puts the bridge side on the bridge, and
// addresses the instance side.
func (n *Node) plumb(in *Instance) error {
	h, err := n.NS.Netlink()
	if err != nil {
		return err
	}
	defer h.Close()
	br, err := h.LinkByName(n.Bridge)
	if err != nil {
		return fmt.Errorf("find bridge %s: %w", n.Bridge, err)
	}
	veth := &netlink.Veth{
		LinkAttrs:     netlink.LinkAttrs{Name: in.Veth, MTU: n.cfg.MTU, MasterIndex: br.Attrs().Index},
		PeerName:      in.Peer,
		PeerMTU:       uint32(n.cfg.MTU),
		PeerNamespace: netlink.NsFd(in.NS.Handle()),
	}
	if err := h.LinkAdd(veth); err != nil {
		return fmt.Errorf("create veth %s/%s for %s: %w", in.Veth, in.Peer, in.Name, kernelLacks(err, "veth pairs (CONFIG_VETH, module veth)"))
	}
	host, err := h.LinkByName(in.Veth)
	if err != nil {
		return fmt.Errorf("find veth %s: %w", in.Veth, err)
	}
	in.VethIndex = host.Attrs().Index
	if err := h.LinkSetUp(host); err != nil {
		return fmt.Errorf("set %s up: %w", in.Veth, err)
	}

	ih, err := in.NS.Netlink()
	if err != nil {
		return err
	}
	defer ih.Close()
	peer, err := ih.LinkByName(in.Peer)
	if err != nil {
		return fmt.Errorf("find veth %s in %s: %w", in.Peer, in.NS.Name, err)
	}
	in.MAC = peer.Attrs().HardwareAddr
	if err := ih.AddrAdd(peer, &netlink.Addr{IPNet: ipNet(in.NSIP, n.cfg.Subnet.Bits())}); err != nil {
		return fmt.Errorf("address %s: %w", in.Peer, err)
	}
	if err := ih.LinkSetUp(peer); err != nil {
		return fmt.Errorf("set %s up: %w", in.Peer, err)
	}
	route := &netlink.Route{LinkIndex: peer.Attrs().Index, Gw: n.BridgeIP.AsSlice()}
	if err := ih.RouteAdd(route); err != nil {
		return fmt.Errorf("default route of %s via %s: %w", in.Name, n.BridgeIP, err)
	}
	return nil
}

// StartProcess starts cmd in the node's namespace as a process of the node's session, which
// records it: the session's Close and `edgebpf cleanup` (after a SIGKILL of this process)
// end it if its starter does not. It is killed when the thread that started it ends (see
// Namespace.Start).
func (n *Node) StartProcess(cmd *exec.Cmd) error { return n.sess.Start(n.NS, cmd) }

// RemoveInstance tells subscribers the instance is going, then deletes its namespace (and so
// its veth pair).
func (n *Node) RemoveInstance(in *Instance) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.removeInstanceLocked(in)
}

func (n *Node) removeInstanceLocked(in *Instance) error {
	svc, _ := n.Registry.Service(in.Service)
	n.Registry.removeInstance(in)
	err := n.Registry.notify(Event{Kind: InstanceRemoved, Service: svc, Instance: in})
	if in.Remote() {
		// Its namespace and addresses belong to the worker hosting it.
		return errors.Join(err, n.sess.updateNodes())
	}
	err = errors.Join(err, n.sess.DeleteNamespace(in.NS))
	n.nsIPs.release(in.NSIP)
	n.svcIPs.release(in.InstanceIP)
	return errors.Join(err, n.sess.updateNodes())
}

// RemoveService removes the service's instances, then the service.
func (n *Node) RemoveService(name string) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.removeServiceLocked(name)
}

func (n *Node) removeServiceLocked(name string) error {
	svc, ok := n.Registry.Service(name)
	if !ok {
		return fmt.Errorf("service %s does not exist on node %s", name, n.cfg.Name)
	}
	var errs []error
	for _, in := range n.Registry.Instances(name) {
		errs = append(errs, n.removeInstanceLocked(in))
	}
	n.Registry.removeService(name)
	errs = append(errs, n.Registry.notify(Event{Kind: ServiceRemoved, Service: svc}))
	if n.underlay == nil {
		n.svcIPs.release(svc.IP) // a cluster's service IP is the cluster's
	}
	return errors.Join(append(errs, n.sess.updateNodes())...)
}

// Instance finds an instance of this node (not a remote one) by service name and index.
func (n *Node) Instance(service string, index int) (*Instance, bool) {
	for _, in := range n.Registry.Instances(service) {
		if in.Index == index && !in.Remote() {
			return in, true
		}
	}
	return nil, false
}

// Close removes every service, telling subscribers, then the node namespace. It is
// idempotent.
func (n *Node) Close() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return nil
	}
	var errs []error
	for _, s := range n.Registry.Services() {
		errs = append(errs, n.removeServiceLocked(s.Name))
	}
	n.closed = true
	n.sess.removeNode(n)
	errs = append(errs, n.sess.DeleteNamespace(n.NS), n.sess.updateNodes())
	return errors.Join(errs...)
}

// Status describes the node for `edgebpf status --json`.
func (n *Node) Status() NodeStatus {
	n.labelMu.Lock()
	st := NodeStatus{
		Name: n.cfg.Name, Namespace: n.NS.Name, Bridge: n.Bridge, BridgeIP: n.BridgeIP.String(),
		API: n.api, DataPlane: n.dataplane, Services: []ServiceStatus{},
	}
	n.labelMu.Unlock()
	if n.underlay != nil {
		st.UnderlayIP = n.underlay.IP.String()
	}
	for _, s := range n.Registry.Services() {
		ss := ServiceStatus{Name: s.Name, ServiceIP: s.IP.String(), Instances: []InstanceStatus{}}
		for _, in := range n.Registry.Instances(s.Name) {
			is := InstanceStatus{
				Name: in.Name, NSIP: in.NSIP.String(), InstanceIP: in.InstanceIP.String(),
				Veth: in.Veth, Node: in.Node,
			}
			if in.NS != nil {
				is.Namespace = in.NS.Name
			}
			if in.NodeIP.IsValid() {
				is.NodeIP = in.NodeIP.String()
			}
			ss.Instances = append(ss.Instances, is)
		}
		st.Services = append(st.Services, ss)
	}
	return st
}

// NodeStatus, ServiceStatus and InstanceStatus are the JSON shape of `edgebpf status --json`.
type NodeStatus struct {
	Name      string `json:"name"`
	Namespace string `json:"namespace"`
	Bridge    string `json:"bridge"`
	BridgeIP  string `json:"bridge_ip"`
	API       string `json:"api"`
	DataPlane string `json:"dataplane"`
	// UnderlayIP is the worker's node IP on a cluster's underlay.
	UnderlayIP string          `json:"underlay_ip,omitempty"`
	Services   []ServiceStatus `json:"services"`
}

// ServiceStatus describes a service and its instances.
type ServiceStatus struct {
	Name      string           `json:"name"`
	ServiceIP string           `json:"service_ip"`
	Instances []InstanceStatus `json:"instances"`
}

// InstanceStatus describes one instance. On a worker of a cluster, the instances of other
// workers are listed too, without namespace and veth, with the worker and its node IP.
type InstanceStatus struct {
	Name       string `json:"name"`
	Namespace  string `json:"namespace"`
	NSIP       string `json:"ns_ip"`
	InstanceIP string `json:"instance_ip"`
	Veth       string `json:"veth"`
	Node       string `json:"node,omitempty"`
	NodeIP     string `json:"node_ip,omitempty"`
}

// kernelLacks turns the errors a kernel without a feature returns into a sentence naming it.
func kernelLacks(err error, feature string) error {
	if errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.ENOTSUP) || errors.Is(err, unix.EAFNOSUPPORT) {
		return fmt.Errorf("this kernel lacks %s: load the module or use a kernel built with it: %w", feature, err)
	}
	return err
}

func ipNet(a netip.Addr, bits int) *net.IPNet {
	return &net.IPNet{IP: a.AsSlice(), Mask: net.CIDRMask(bits, 32)}
}
