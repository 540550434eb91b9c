package netsetup

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/vishvananda/netlink"
)

// Placement puts one instance of Service on worker Worker.
type Placement struct {
	Service string
	Worker  int
}

// ParsePlacement reads "service@worker", e.g. "server@1".
func ParsePlacement(s string) (Placement, error) {
	name, w, ok := strings.Cut(s, "@")
	i, err := strconv.Atoi(w)
	if !ok || err != nil || name == "" {
		return Placement{}, fmt.Errorf("placement %q is not SERVICE@WORKER (e.g. server@1)", s)
	}
	return Placement{Service: name, Worker: i}, nil
}

// JoinConfig describes this host's worker of a cluster whose workers run on separate hosts
// joined by a real network (the underlay). Every host is given the same cluster, node IPs,
// services and placement, and only its own Worker, Device and HostNS: each computes the same
// cluster-wide table (service IPs, instance IPs, namespace IPs, node IPs) from that data, in
// the order the services and placements are listed, and no host asks another for anything.
type JoinConfig struct {
	// Cluster gives the name, worker networks, overlay MTU and service range (zero fields
	// take NewCluster's defaults). Its Workers, Underlay and UnderlayMTU are ignored: the
	// workers are NodeIPs, the underlay's prefix is UnderlayIP's, and its MTU is Device's.
	Cluster ClusterConfig
	// Worker is this host's worker index into NodeIPs.
	Worker int
	// Device is the host's interface on the underlay network (e.g. eth1). The worker reaches
	// it through a macvlan child created directly inside the worker namespace: the host's own
	// addresses, routes and links are not changed.
	Device string
	// HostNS is the namespace holding Device; nil means the process's own (the host's).
	HostNS *Namespace
	// UnderlayIP is this worker's node IP with the underlay's prefix length, an address of
	// the underlay network that nothing else uses (not the host's own address on Device).
	UnderlayIP netip.Prefix
	// NodeIPs holds every worker's node IP by worker index; NodeIPs[Worker] is
	// UnderlayIP's address.
	NodeIPs []netip.Addr
	// Services are created in this order; Placement's instances after them, in its order.
	Services  []string
	Placement []Placement
}

// resolved returns the cluster configuration the member shares with its peers.
func (c JoinConfig) resolved() ClusterConfig {
	cc := c.Cluster
	cc.Workers = len(c.NodeIPs)
	cc.Underlay = c.UnderlayIP.Masked()
	if cc.UnderlayMTU == 0 {
		cc.UnderlayMTU = 65535 // unknown until CheckDevice reads the device, which checks it
	}
	return cc.withDefaults()
}

// Validate checks the configuration without touching the system: the workers and their node
// IPs, the services and the placement. CheckDevice checks the host's interface.
func (c JoinConfig) Validate() error {
	cc := c.resolved()
	if len(c.NodeIPs) == 0 {
		return errors.New("a cluster needs at least one worker's node IP")
	}
	if !c.UnderlayIP.IsValid() || !c.UnderlayIP.Addr().Is4() {
		return fmt.Errorf("underlay address %s is not an IPv4 ADDRESS/PREFIX such as 10.10.1.101/24", c.UnderlayIP)
	}
	if c.Worker < 0 || c.Worker >= len(c.NodeIPs) {
		return fmt.Errorf("worker %d does not exist: the cluster has workers 0 to %d (this host's and one per peer)", c.Worker, len(c.NodeIPs)-1)
	}
	if err := cc.Validate(); err != nil {
		return err
	}
	seen := map[netip.Addr]int{}
	for i, ip := range c.NodeIPs {
		name := cc.worker(i).Name
		switch {
		case !cc.Underlay.Contains(ip):
			return fmt.Errorf("node IP %s of %s is not on the underlay %s (this worker's %s): give peers addresses of the same network", ip, name, cc.Underlay, c.UnderlayIP)
		case ip == cc.Underlay.Addr() || ip == lastAddr(cc.Underlay):
			return fmt.Errorf("node IP %s of %s is the underlay %s's network or broadcast address: choose a host address", ip, name, cc.Underlay)
		}
		if j, dup := seen[ip]; dup {
			return fmt.Errorf("%s and %s have the same node IP %s: every worker needs its own", cc.worker(j).Name, name, ip)
		}
		seen[ip] = i
	}
	if c.NodeIPs[c.Worker] != c.UnderlayIP.Addr() {
		return fmt.Errorf("worker %d's node IP is %s, not this host's underlay address %s", c.Worker, c.NodeIPs[c.Worker], c.UnderlayIP.Addr())
	}
	return c.validatePlacement(cc)
}

// validatePlacement checks that the services and placement fit the cluster's addresses.
func (c JoinConfig) validatePlacement(cc ClusterConfig) error {
	perWorker := make([]int, len(c.NodeIPs))
	for i, s := range c.Services {
		if err := validName(s); err != nil {
			return fmt.Errorf("service name: %w", err)
		}
		if slices.Contains(c.Services[:i], s) {
			return fmt.Errorf("service %s is listed twice", s)
		}
	}
	for _, p := range c.Placement {
		if !slices.Contains(c.Services, p.Service) {
			return fmt.Errorf("placement %s@%d names an unknown service: the services are %v", p.Service, p.Worker, c.Services)
		}
		if p.Worker < 0 || p.Worker >= len(c.NodeIPs) {
			return fmt.Errorf("placement %s@%d names an unknown worker: the cluster has workers 0 to %d", p.Service, p.Worker, len(c.NodeIPs)-1)
		}
		perWorker[p.Worker]++
	}
	sub, _ := newPool(cc.worker(0).Subnet)
	for i, n := range perWorker {
		if n > sub.size()-1 { // the bridge takes one address
			return fmt.Errorf("worker %d has %d instances but its subnet %s holds %d", i, n, cc.worker(i).Subnet, sub.size()-1)
		}
	}
	svc, _ := newPool(cc.ServiceRange)
	if n := len(c.Services) + len(c.Placement); n > svc.size() {
		return fmt.Errorf("%d services and instances need %d addresses of the service range %s, which holds %d", len(c.Services), n, cc.ServiceRange, svc.size())
	}
	return nil
}

// CheckDevice checks the host's underlay interface before anything is created and returns
// its MTU: it must exist, be up, carry the overlay's MTU plus the tunnel's 28 bytes, and not
// already hold UnderlayIP (the worker needs an address of its own). It only reads.
func (c JoinConfig) CheckDevice() (mtu int, err error) {
	h, err := c.hostNetlink()
	if err != nil {
		return 0, err
	}
	defer h.Close()
	link, err := h.LinkByName(c.Device)
	if err != nil {
		return 0, fmt.Errorf("underlay interface %q does not exist on this host (ip -br link lists the interfaces): %w", c.Device, err)
	}
	a := link.Attrs()
	cc := c.resolved()
	switch {
	case a.Flags&net.FlagUp == 0 || a.OperState == netlink.OperDown:
		return 0, fmt.Errorf("underlay interface %s is down: bring it up first (ip link set %s up)", c.Device, c.Device)
	case link.Type() == "loopback" || a.EncapType == "loopback":
		return 0, fmt.Errorf("underlay interface %s is a loopback device: use the interface on the network between the hosts", c.Device)
	case a.MTU < cc.MTU+28:
		return 0, fmt.Errorf("underlay interface %s has MTU %d, less than the overlay's %d plus the tunnel's 28 bytes: raise its MTU or lower --mtu to %d", c.Device, a.MTU, cc.MTU, a.MTU-28)
	}
	addrs, err := h.AddrList(nil, netlink.FAMILY_V4)
	if err != nil {
		return 0, fmt.Errorf("list this host's addresses: %w", err)
	}
	for _, ad := range addrs {
		if ip, ok := netip.AddrFromSlice(ad.IP.To4()); ok && ip == c.UnderlayIP.Addr() {
			return 0, fmt.Errorf("%s is this host's own address: give the worker a free address of the underlay network, not the host's", ip)
		}
	}
	return a.MTU, nil
}

func (c JoinConfig) hostNetlink() (*netlink.Handle, error) {
	if c.HostNS != nil {
		return c.HostNS.Netlink()
	}
	h, err := netlink.NewHandle()
	if err != nil {
		return nil, fmt.Errorf("netlink handle: %w", err)
	}
	return h, nil
}

// Member is this host's worker of a cluster spread over hosts: a Node whose underlay link is a
// macvlan child of a real interface, and whose registry holds every instance of the cluster,
// its own and (Remote) the peers', computed from the shared JoinConfig.
type Member struct {
	Node *Node

	cfg     JoinConfig
	cc      ClusterConfig
	mu      sync.Mutex
	remotes []*pool // namespace IPs of the other workers, by index; nil for this one
	placed  bool
}

// JoinCluster builds this host's worker: its node namespace (subnet 10.18.<Worker>.0/24 by
// default) and its underlay link, a macvlan child of Device created directly inside the worker
// namespace with the node IP UnderlayIP. Services and instances come with Populate, after the
// data plane has subscribed. On error, what was built is removed again; the member goes with
// Close or the session.
func JoinCluster(sess *Session, cfg JoinConfig) (m *Member, err error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	mtu, err := cfg.CheckDevice()
	if err != nil {
		return nil, err
	}
	cfg.Cluster.UnderlayMTU = mtu
	cc := cfg.resolved()
	svcIPs, _ := newPool(cc.ServiceRange)
	node, err := newNode(sess, cc.worker(cfg.Worker), svcIPs, &numbering{next: map[string]int{}})
	if err != nil {
		return nil, err
	}
	m = &Member{Node: node, cfg: cfg, cc: cc, remotes: make([]*pool, len(cfg.NodeIPs))}
	defer func() {
		if err != nil {
			err = errors.Join(err, node.Close())
		}
	}()
	if err := m.attach(); err != nil {
		return nil, fmt.Errorf("join %s to the underlay through %s: %w", node.Name(), cfg.Device, err)
	}
	for j, ip := range cfg.NodeIPs {
		if j == cfg.Worker {
			continue
		}
		w := cc.worker(j)
		node.underlay.Peers = append(node.underlay.Peers, Peer{Name: w.Name, IP: ip, Subnet: w.Subnet})
		m.remotes[j], _ = newPool(w.Subnet)
		_, _ = m.remotes[j].take() // the peer's bridge, as newNode takes it
	}
	return m, sess.updateNodes()
}

// attach creates the macvlan child of Device inside the worker namespace (the kernel creates
// it there directly: it never exists in the host namespace), addresses it and sets it up.
//
// Note: ipvlan (L2) was the first choice, as it adds no MAC address to the underlay; but it
// hands a packet to a child by destination IP, so routed traffic to the worker's instance
// subnet (the direct data plane across hosts) would land in the host namespace. macvlan
// delivers by destination MAC. This kernel also lacks ipvlan.
func (m *Member) attach() error {
	h, err := m.cfg.hostNetlink()
	if err != nil {
		return err
	}
	defer h.Close()
	parent, err := h.LinkByName(m.cfg.Device)
	if err != nil {
		return err
	}
	mv := &netlink.Macvlan{
		LinkAttrs: netlink.LinkAttrs{
			Name: UnderlayLink, ParentIndex: parent.Attrs().Index, MTU: m.cc.UnderlayMTU,
			Namespace: netlink.NsFd(m.Node.NS.Handle()),
		},
		Mode: netlink.MACVLAN_MODE_BRIDGE,
	}
	if err := h.LinkAdd(mv); err != nil {
		return fmt.Errorf("create macvlan %s in %s: %w", UnderlayLink, m.Node.NS.Name,
			kernelLacks(err, "macvlan devices (CONFIG_MACVLAN, module macvlan)"))
	}
	wh, err := m.Node.NS.Netlink()
	if err != nil {
		return err
	}
	defer wh.Close()
	link, err := wh.LinkByName(UnderlayLink)
	if err != nil {
		return err
	}
	if err := wh.AddrAdd(link, &netlink.Addr{IPNet: ipNet(m.cfg.UnderlayIP.Addr(), m.cfg.UnderlayIP.Bits())}); err != nil {
		return fmt.Errorf("address %s with %s: %w", UnderlayLink, m.cfg.UnderlayIP, err)
	}
	if err := wh.LinkSetUp(link); err != nil {
		return fmt.Errorf("set %s up: %w", UnderlayLink, err)
	}
	m.Node.underlay = &UnderlayInfo{
		Link: UnderlayLink, Index: link.Attrs().Index, IP: m.cfg.UnderlayIP.Addr(), Prefix: m.cc.Underlay,
		MAC: link.Attrs().HardwareAddr, MTU: m.cc.UnderlayMTU,
	}
	return nil
}

// Config returns the cluster configuration shared by every member, defaults applied.
func (m *Member) Config() ClusterConfig { return m.cc }

// Populate creates the configured services, then the placed instances in order: this worker's
// own with their namespaces, the others' as remote instances with the addresses their own
// hosts give them. Call it once, after the data plane is deployed.
func (m *Member) Populate() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.placed {
		return errors.New("the member's services are already placed")
	}
	m.placed = true
	for _, name := range m.cfg.Services {
		ip, err := m.Node.svcIPs.take()
		if err != nil {
			return err
		}
		if err := m.Node.addService(Service{Name: name, IP: ip, Balancing: RoundRobin}); err != nil {
			return err
		}
	}
	for _, p := range m.cfg.Placement {
		if err := m.place(p); err != nil {
			return fmt.Errorf("place %s on worker %d: %w", p.Service, p.Worker, err)
		}
	}
	return nil
}

// place creates a local instance or announces a remote one, taking its addresses in the same
// order every member does.
func (m *Member) place(p Placement) error {
	if p.Worker == m.cfg.Worker {
		_, err := m.Node.AddInstance(p.Service)
		return err
	}
	nsIP, err := m.remotes[p.Worker].take()
	if err != nil {
		return err
	}
	instIP, err := m.Node.svcIPs.take()
	if err != nil {
		return err
	}
	idx := m.Node.index.take(p.Service)
	return m.Node.addRemote(&Instance{
		Service: p.Service, Index: idx, Name: p.Service + "-" + strconv.Itoa(idx),
		NSIP: nsIP, InstanceIP: instIP, Node: m.cc.worker(p.Worker).Name, NodeIP: m.cfg.NodeIPs[p.Worker],
		remote: true,
	})
}

// Close removes the worker: its instances, its namespace and with it the macvlan child. It is
// idempotent.
func (m *Member) Close() error { return m.Node.Close() }

// lastAddr is a prefix's broadcast address.
func lastAddr(p netip.Prefix) netip.Addr {
	a := p.Masked().Addr().As4()
	n := uint32(a[0])<<24 | uint32(a[1])<<16 | uint32(a[2])<<8 | uint32(a[3])
	n |= 1<<(32-p.Bits()) - 1
	return netip.AddrFrom4([4]byte{byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)})
}
