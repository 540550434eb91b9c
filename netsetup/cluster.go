package netsetup

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"sync"

	"github.com/vishvananda/netlink"
)

// TunnelPort is the UDP port of Oakestra's worker-to-worker tunnel (reference.md §8).
const TunnelPort = 50103

// Cluster defaults (reference.md §8): a 1500-byte underlay carries the 1450-byte overlay with
// room for the tunnel's outer IPv4 and UDP headers.
var (
	DefaultUnderlay   = netip.MustParsePrefix("10.17.0.0/24")
	DefaultWorkerNets = netip.MustParsePrefix("10.18.0.0/16")
)

// DefaultUnderlayMTU is the underlay's MTU; the overlay keeps DefaultMTU.
const DefaultUnderlayMTU = 1500

// Names of the underlay's links: the bridge in the underlay namespace, the worker's end of its
// veth in the worker namespace, and the underlay end (ebu-<worker>).
const (
	UnderlayBridge = LinkPrefix + "ul0"
	UnderlayLink   = LinkPrefix + "u0"
)

// ClusterConfig describes a cluster of emulated workers joined by an underlay. Zero fields
// take the defaults.
type ClusterConfig struct {
	Name         string       // workers are <Name>-w<i>; default "c"
	Workers      int          // default 2
	Underlay     netip.Prefix // the workers' node IPs, worker i the (i+1)th host; default 10.17.0.0/24
	WorkerNets   netip.Prefix // split into one /24 per worker (10.18.i.0/24); default 10.18.0.0/16
	UnderlayMTU  int          // default 1500
	MTU          int          // the overlay's: bridges and instance veths; default 1450
	RateBits     uint64       // if set, a TBF on each worker's underlay link shapes its egress to this many bit/s
	ServiceRange netip.Prefix // default 10.30.0.0/16, one pool for the whole cluster
}

func (c ClusterConfig) withDefaults() ClusterConfig {
	if c.Name == "" {
		c.Name = "c"
	}
	if c.Workers == 0 {
		c.Workers = 2
	}
	if !c.Underlay.IsValid() {
		c.Underlay = DefaultUnderlay
	}
	if !c.WorkerNets.IsValid() {
		c.WorkerNets = DefaultWorkerNets
	}
	if c.UnderlayMTU == 0 {
		c.UnderlayMTU = DefaultUnderlayMTU
	}
	if c.MTU == 0 {
		c.MTU = DefaultMTU
	}
	if !c.ServiceRange.IsValid() {
		c.ServiceRange = DefaultServiceRange
	}
	return c
}

// Resolved returns the configuration with its defaults applied.
func (c ClusterConfig) Resolved() ClusterConfig { return c.withDefaults() }

// Validate checks a configuration after defaults are applied; nothing is created before it.
func (c ClusterConfig) Validate() error {
	c = c.withDefaults()
	if err := validName(c.Name); err != nil {
		return fmt.Errorf("cluster name: %w", err)
	}
	if c.Workers < 1 || c.Workers > 64 {
		return fmt.Errorf("%d workers is out of range: use 1 to 64", c.Workers)
	}
	if c.UnderlayMTU < 576 || c.UnderlayMTU > 65535 {
		return fmt.Errorf("underlay mtu %d is out of range: use 576 to 65535", c.UnderlayMTU)
	}
	if c.MTU+28 > c.UnderlayMTU {
		return fmt.Errorf("overlay mtu %d leaves no room for the tunnel's 28 bytes of headers on an underlay of %d: use at most %d", c.MTU, c.UnderlayMTU, c.UnderlayMTU-28)
	}
	if !c.Underlay.Addr().Is4() || c.Underlay.Bits() > 30 || 1<<(32-c.Underlay.Bits())-2 < c.Workers {
		return fmt.Errorf("underlay %s has no address for each of %d workers: use a larger IPv4 prefix", c.Underlay, c.Workers)
	}
	if !c.WorkerNets.Addr().Is4() || c.WorkerNets.Bits() > 24 || 1<<(24-c.WorkerNets.Bits()) < c.Workers {
		return fmt.Errorf("worker networks %s hold fewer than %d /24 subnets: use a larger IPv4 prefix", c.WorkerNets, c.Workers)
	}
	for _, p := range []netip.Prefix{c.Underlay, c.WorkerNets} {
		if p.Overlaps(c.ServiceRange) {
			return fmt.Errorf("%s overlaps the service range %s: choose disjoint prefixes", p, c.ServiceRange)
		}
	}
	if c.Underlay.Overlaps(c.WorkerNets) {
		return fmt.Errorf("underlay %s overlaps the worker networks %s: choose disjoint prefixes", c.Underlay, c.WorkerNets)
	}
	return c.worker(0).Validate()
}

// worker returns worker i's node configuration: its name and its /24.
func (c ClusterConfig) worker(i int) NodeConfig {
	base := c.WorkerNets.Masked().Addr().As4()
	base[2] += byte(i)
	return NodeConfig{
		Name:         c.Name + "-w" + strconv.Itoa(i),
		Subnet:       netip.PrefixFrom(netip.AddrFrom4(base), 24),
		ServiceRange: c.ServiceRange,
		MTU:          c.MTU,
	}
}

// underlayIP is worker i's node IP.
func (c ClusterConfig) underlayIP(i int) netip.Addr {
	a := c.Underlay.Masked().Addr()
	for range i + 1 {
		a = a.Next()
	}
	return a
}

// UnderlayInfo is what a worker of a cluster knows about the underlay: its own link and node
// IP, and its peers. Data planes read it from Node.Underlay.
type UnderlayInfo struct {
	Link   string // the worker's underlay link, in the worker (node) namespace
	Index  int    // its ifindex in the worker namespace
	IP     netip.Addr
	Prefix netip.Prefix // the underlay's prefix
	MAC    net.HardwareAddr
	MTU    int
	Peers  []Peer // the other workers
}

// Peer is another worker of the cluster, as one worker sees it.
type Peer struct {
	Name   string
	IP     netip.Addr   // its node IP on the underlay
	Subnet netip.Prefix // its namespace IPs
}

// Underlay returns what the node knows of its cluster's underlay; false for a standalone node.
func (n *Node) Underlay() (UnderlayInfo, bool) {
	if n.underlay == nil {
		return UnderlayInfo{}, false
	}
	return *n.underlay, true
}

// numbering hands out per-service instance numbers; a cluster's workers share one, so an
// instance's name is unique in the cluster.
type numbering struct {
	mu   sync.Mutex
	next map[string]int
}

func (c *numbering) take(service string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	i := c.next[service]
	c.next[service] = i + 1
	return i
}

// Cluster is a set of emulated workers joined by an underlay: a namespace with a bridge to
// which every worker's namespace has a veth carrying its node IP. Every worker's registry
// holds every instance of the cluster (its own and, marked Remote, the others'), as
// Oakestra's table gives every worker the instances and their node IPs. The underlay routes
// nothing by itself: data planes decide what crosses it (a tunnel, or routes for `direct`).
type Cluster struct {
	Workers  []*Node
	Underlay *Namespace

	cfg     ClusterConfig
	sess    *Session
	mu      sync.Mutex                // serialises cluster-wide changes
	remotes map[*Instance][]*Instance // a local instance -> its copies on the other workers
	closed  bool
}

// NewCluster builds the underlay and the workers inside sess and returns once the underlay
// bridge forwards on every worker's port. On error, what was built is removed again. The cluster is removed by Close or with the session.
func NewCluster(sess *Session, cfg ClusterConfig) (c *Cluster, err error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	c = &Cluster{cfg: cfg, sess: sess, remotes: map[*Instance][]*Instance{}}
	defer func() {
		if err != nil {
			err = errors.Join(err, c.Close())
		}
	}()
	if c.Underlay, err = sess.NewNamespace(cfg.Name + "-underlay"); err != nil {
		return nil, err
	}
	if err := c.buildUnderlayBridge(); err != nil {
		return nil, err
	}
	svcIPs, _ := newPool(cfg.ServiceRange)
	index := &numbering{next: map[string]int{}}
	for i := range cfg.Workers {
		w, err := newNode(sess, cfg.worker(i), svcIPs, index)
		if err != nil {
			return nil, fmt.Errorf("worker %d: %w", i, err)
		}
		c.Workers = append(c.Workers, w)
		if err := c.join(i, w); err != nil {
			return nil, fmt.Errorf("join worker %s to the underlay: %w", w.Name(), err)
		}
	}
	// The underlay carries nothing until its bridge forwards on every worker's port: a
	// data plane's first packet to another worker would lose its ARP request.
	var ports []string
	for i := range c.Workers {
		ports = append(ports, underlayPort(i))
	}
	if err := waitForwarding(c.Underlay, ports...); err != nil {
		return nil, err
	}
	for i, w := range c.Workers {
		for j, p := range c.Workers {
			if i != j {
				w.underlay.Peers = append(w.underlay.Peers, Peer{Name: p.Name(), IP: p.underlay.IP, Subnet: p.cfg.Subnet})
			}
		}
	}
	sess.OnClose(c.Close)
	sess.addCluster(c)
	if err := sess.updateNodes(); err != nil {
		return nil, err
	}
	return c, nil
}

// ClusterStatus describes a cluster in a session's record and `edgebpf status`: its underlay
// namespace and bridge, the underlay's addressing and shaping, and its workers in order.
type ClusterStatus struct {
	Name              string   `json:"name"`
	UnderlayNamespace string   `json:"underlay_namespace"`
	UnderlayBridge    string   `json:"underlay_bridge"`
	Underlay          string   `json:"underlay"`
	UnderlayMTU       int      `json:"underlay_mtu"`
	RateBits          uint64   `json:"rate_bits,omitempty"` // 0: unshaped
	Workers           []string `json:"workers"`
}

// Status describes the cluster.
func (c *Cluster) Status() ClusterStatus {
	st := ClusterStatus{Name: c.cfg.Name, UnderlayBridge: UnderlayBridge, Underlay: c.cfg.Underlay.String(),
		UnderlayMTU: c.cfg.UnderlayMTU, RateBits: c.cfg.RateBits, Workers: []string{}}
	if c.Underlay != nil {
		st.UnderlayNamespace = c.Underlay.Name
	}
	for _, w := range c.Workers {
		st.Workers = append(st.Workers, w.Name())
	}
	return st
}

// Config returns the cluster's configuration with defaults applied.
func (c *Cluster) Config() ClusterConfig { return c.cfg }

func (c *Cluster) buildUnderlayBridge() error {
	h, err := c.Underlay.Netlink()
	if err != nil {
		return err
	}
	defer h.Close()
	br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: UnderlayBridge, MTU: c.cfg.UnderlayMTU}}
	if err := h.LinkAdd(br); err != nil {
		return fmt.Errorf("create underlay bridge: %w", kernelLacks(err, "Linux bridges (CONFIG_BRIDGE, module bridge)"))
	}
	if err := h.LinkSetUp(br); err != nil {
		return fmt.Errorf("set underlay bridge up: %w", err)
	}
	return nil
}

// underlayPort is worker i's port on the underlay bridge, in the underlay namespace.
func underlayPort(i int) string { return fmt.Sprintf("%su-%d", LinkPrefix, i) }

// join connects worker i to the underlay bridge with a veth created from the worker's
// namespace straight into the underlay's (no link in the host namespace), addresses the
// worker's end with its node IP and, if asked, shapes its egress.
func (c *Cluster) join(i int, w *Node) error {
	h, err := w.NS.Netlink()
	if err != nil {
		return err
	}
	defer h.Close()
	peer := underlayPort(i)
	veth := &netlink.Veth{
		LinkAttrs: netlink.LinkAttrs{Name: UnderlayLink, MTU: c.cfg.UnderlayMTU},
		PeerName:  peer, PeerMTU: uint32(c.cfg.UnderlayMTU),
		PeerNamespace: netlink.NsFd(c.Underlay.Handle()),
	}
	if err := h.LinkAdd(veth); err != nil {
		return fmt.Errorf("create veth %s/%s: %w", UnderlayLink, peer, err)
	}
	link, err := h.LinkByName(UnderlayLink)
	if err != nil {
		return err
	}
	ip := c.cfg.underlayIP(i)
	if err := h.AddrAdd(link, &netlink.Addr{IPNet: ipNet(ip, c.cfg.Underlay.Bits())}); err != nil {
		return fmt.Errorf("address %s: %w", UnderlayLink, err)
	}
	if err := h.LinkSetUp(link); err != nil {
		return err
	}
	if c.cfg.RateBits > 0 {
		if err := shape(h, link, c.cfg.RateBits); err != nil {
			return err
		}
	}
	w.underlay = &UnderlayInfo{
		Link: UnderlayLink, Index: link.Attrs().Index, IP: ip, Prefix: c.cfg.Underlay.Masked(),
		MAC: link.Attrs().HardwareAddr, MTU: c.cfg.UnderlayMTU,
	}
	uh, err := c.Underlay.Netlink()
	if err != nil {
		return err
	}
	defer uh.Close()
	br, err := uh.LinkByName(UnderlayBridge)
	if err != nil {
		return err
	}
	ul, err := uh.LinkByName(peer)
	if err != nil {
		return err
	}
	if err := uh.LinkSetMaster(ul, br); err != nil {
		return fmt.Errorf("put %s on the underlay bridge: %w", peer, err)
	}
	return uh.LinkSetUp(ul)
}

// shape puts a token bucket on link's egress: rate in bit/s, a burst of 10 ms at that rate
// (at least 64 KiB, so GSO packets pass), a queue of 50 ms.
func shape(h *netlink.Handle, link netlink.Link, rateBits uint64) error {
	rate := rateBits / 8
	burst := max(rate/100, 64<<10)
	tbf := &netlink.Tbf{
		QdiscAttrs: netlink.QdiscAttrs{LinkIndex: link.Attrs().Index, Handle: netlink.MakeHandle(1, 0), Parent: netlink.HANDLE_ROOT},
		Rate:       rate, Buffer: uint32(burst), Limit: uint32(rate/20 + burst),
	}
	if err := h.QdiscAdd(tbf); err != nil {
		return fmt.Errorf("shape %s to %d bit/s with tbf: %w", link.Attrs().Name, rateBits, kernelLacks(err, "the tbf qdisc (CONFIG_NET_SCH_TBF)"))
	}
	return nil
}

// AddService creates a service with one service IP on every worker; on error no worker keeps
// it.
func (c *Cluster) AddService(name string) (Service, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return Service{}, errors.New("cluster is closed")
	}
	if _, ok := c.Workers[0].Registry.Service(name); ok {
		return Service{}, fmt.Errorf("service %s already exists in cluster %s", name, c.cfg.Name)
	}
	ip, err := c.Workers[0].svcIPs.take()
	if err != nil {
		return Service{}, err
	}
	svc := Service{Name: name, IP: ip, Balancing: RoundRobin}
	for i, w := range c.Workers {
		if err := w.addService(svc); err != nil {
			for _, prev := range c.Workers[:i] {
				err = errors.Join(err, prev.RemoveService(name))
			}
			c.Workers[0].svcIPs.release(ip)
			return Service{}, err
		}
	}
	return svc, nil
}

// AddInstance creates an instance of the service on worker `worker` and announces it on every
// other worker as a remote instance. On error no worker keeps it.
func (c *Cluster) AddInstance(service string, worker int) (*Instance, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, errors.New("cluster is closed")
	}
	if worker < 0 || worker >= len(c.Workers) {
		return nil, fmt.Errorf("worker %d does not exist: cluster %s has workers 0 to %d", worker, c.cfg.Name, len(c.Workers)-1)
	}
	in, err := c.Workers[worker].AddInstance(service)
	if err != nil {
		return nil, err
	}
	var copies []*Instance
	for i, w := range c.Workers {
		if i == worker {
			continue
		}
		cp := &Instance{
			Service: in.Service, Index: in.Index, Name: in.Name, NSIP: in.NSIP,
			InstanceIP: in.InstanceIP, Node: in.Node, NodeIP: in.NodeIP, remote: true,
		}
		if err := w.addRemote(cp); err != nil {
			err = fmt.Errorf("announce %s on %s: %w", in.Name, w.Name(), err)
			for _, prev := range copies {
				err = errors.Join(err, c.workerOf(prev).RemoveInstance(prev))
			}
			return nil, errors.Join(err, c.Workers[worker].RemoveInstance(in))
		}
		copies = append(copies, cp)
	}
	c.remotes[in] = copies
	return in, nil
}

// RemoveInstance removes a (local) instance: the other workers forget it first, so no data
// plane sends to it, then its worker removes it.
func (c *Cluster) RemoveInstance(in *Instance) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if in.Remote() {
		return fmt.Errorf("instance %s is a remote copy: remove it through its own worker %s", in.Name, in.Node)
	}
	var errs []error
	for _, cp := range c.remotes[in] {
		errs = append(errs, c.workerOf(cp).RemoveInstance(cp))
	}
	delete(c.remotes, in)
	w := c.workerNamed(in.Node)
	if w == nil {
		return errors.Join(append(errs, fmt.Errorf("instance %s names no worker of the cluster", in.Name))...)
	}
	return errors.Join(append(errs, w.RemoveInstance(in))...)
}

// RemoveService removes a service from every worker: its instances first (each through
// RemoveInstance, so the other workers forget it before its own worker removes it), then the
// service, and releases its service IP.
func (c *Cluster) RemoveService(name string) error {
	svc, ok := c.Workers[0].Registry.Service(name)
	if !ok {
		return fmt.Errorf("service %s does not exist in cluster %s", name, c.cfg.Name)
	}
	var errs []error
	for _, w := range c.Workers {
		for _, in := range w.Registry.Instances(name) {
			if !in.Remote() {
				errs = append(errs, c.RemoveInstance(in))
			}
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, w := range c.Workers {
		errs = append(errs, w.RemoveService(name))
	}
	c.Workers[0].svcIPs.release(svc.IP)
	return errors.Join(errs...)
}

// workerOf returns the worker whose registry holds cp, a remote copy.
func (c *Cluster) workerOf(cp *Instance) *Node {
	for _, w := range c.Workers {
		for _, x := range w.Registry.Instances(cp.Service) {
			if x == cp {
				return w
			}
		}
	}
	return nil
}

func (c *Cluster) workerNamed(name string) *Node {
	for _, w := range c.Workers {
		if w.Name() == name {
			return w
		}
	}
	return nil
}

// Close removes the workers, then the underlay. It is idempotent.
func (c *Cluster) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil
	}
	c.closed = true
	c.sess.removeCluster(c)
	var errs []error
	for i := len(c.Workers) - 1; i >= 0; i-- {
		errs = append(errs, c.Workers[i].Close())
	}
	if c.Underlay != nil {
		errs = append(errs, c.sess.DeleteNamespace(c.Underlay))
	}
	return errors.Join(errs...)
}
