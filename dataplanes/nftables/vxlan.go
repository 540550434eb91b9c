package nftables

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/edgebpf/edgebpf/netsetup"
)

// The VXLAN overlay between the workers of a cluster, as flannel's vxlan backend builds it
// (VNI 1, no learning, static neighbours and FDB). Its port is IANA's 4789; flannel's default
// is Linux's pre-IANA 8472.
const (
	VXLANDevice = netsetup.LinkPrefix + "vx0"
	VXLANID     = 1
	VXLANPort   = 4789
	// VXLANOverhead is what VXLAN adds to an inner IPv4 packet: outer IPv4 (20), UDP (8),
	// VXLAN (8) and the inner Ethernet header (14).
	VXLANOverhead = 50
)

// VTEP returns a worker's VTEP address and MAC, derived from its subnet and node IP so that
// every worker knows every peer's without asking it (flannel publishes them as node
// annotations): the subnet's network address, as flannel gives flannel.1, and a locally
// administered unicast MAC 06:eb:<node IP>.
func VTEP(subnet netip.Prefix, nodeIP netip.Addr) (netip.Addr, net.HardwareAddr) {
	ip := nodeIP.As4()
	return subnet.Masked().Addr(), net.HardwareAddr{0x06, 0xeb, ip[0], ip[1], ip[2], ip[3]}
}

// overlay is the VXLAN device in a worker's namespace with, per peer, a route to the peer's
// subnet via its VTEP (onlink), a neighbour entry (VTEP IP -> VTEP MAC) and an FDB entry
// (VTEP MAC -> node IP), and, per remote instance, a /32 route to its instance IP via its
// worker's VTEP: the route replies to a remote client's instance IP need, since the client's
// worker SNATs its sessions to that address and only there can undo it.
type overlay struct {
	h      *netlink.Handle
	ns     *netsetup.Namespace
	link   int
	mtu    int
	peers  map[netip.Addr]netsetup.Peer // node IP -> peer
	routes map[netip.Addr]*netlink.Route
}

// newOverlay creates the device and the entries for every peer; on error, the device (and
// with it every entry) is removed again.
func newOverlay(node *netsetup.Node, u netsetup.UnderlayInfo) (o *overlay, err error) {
	mtu := u.MTU - VXLANOverhead
	if node.Config().MTU > mtu {
		return nil, fmt.Errorf("the overlay mtu %d exceeds what VXLAN carries on a %d-byte underlay (%d): build the cluster with an overlay mtu of at most %d", node.Config().MTU, u.MTU, mtu, mtu)
	}
	h, err := node.NS.Netlink()
	if err != nil {
		return nil, err
	}
	o = &overlay{h: h, ns: node.NS, mtu: mtu, peers: map[netip.Addr]netsetup.Peer{}, routes: map[netip.Addr]*netlink.Route{}}
	defer func() {
		if err != nil {
			err = errors.Join(err, o.destroy())
		}
	}()
	ownIP, ownMAC := VTEP(node.Config().Subnet, u.IP)
	vx := &netlink.Vxlan{
		LinkAttrs: netlink.LinkAttrs{Name: VXLANDevice, MTU: mtu, HardwareAddr: ownMAC},
		VxlanId:   VXLANID, VtepDevIndex: u.Index, SrcAddr: u.IP.AsSlice(), Port: VXLANPort, Learning: false,
	}
	if err := h.LinkAdd(vx); err != nil {
		return nil, fmt.Errorf("create vxlan device %s: %w", VXLANDevice, err)
	}
	link, err := h.LinkByName(VXLANDevice)
	if err != nil {
		return nil, err
	}
	o.link = link.Attrs().Index
	if err := h.AddrAdd(link, &netlink.Addr{IPNet: ipNet(ownIP, 32)}); err != nil {
		return nil, fmt.Errorf("address %s with its vtep %s: %w", VXLANDevice, ownIP, err)
	}
	if err := h.LinkSetUp(link); err != nil {
		return nil, fmt.Errorf("set %s up: %w", VXLANDevice, err)
	}
	for _, p := range u.Peers {
		if err := o.addPeer(p); err != nil {
			return nil, fmt.Errorf("peer %s: %w", p.Name, err)
		}
	}
	return o, nil
}

// addPeer installs, as flannel does, the peer's neighbour and FDB entries and the route to
// its subnet via its VTEP.
func (o *overlay) addPeer(p netsetup.Peer) error {
	vtep, mac := VTEP(p.Subnet, p.IP)
	neigh := &netlink.Neigh{LinkIndex: o.link, Family: unix.AF_INET, State: netlink.NUD_PERMANENT, Type: unix.RTN_UNICAST, IP: vtep.AsSlice(), HardwareAddr: mac}
	if err := o.h.NeighSet(neigh); err != nil {
		return fmt.Errorf("neighbour %s -> %s: %w", vtep, mac, err)
	}
	fdb := &netlink.Neigh{LinkIndex: o.link, Family: unix.AF_BRIDGE, State: netlink.NUD_PERMANENT, Flags: netlink.NTF_SELF, IP: p.IP.AsSlice(), HardwareAddr: mac}
	if err := o.h.NeighSet(fdb); err != nil {
		return fmt.Errorf("fdb %s -> %s: %w", mac, p.IP, err)
	}
	if err := o.h.RouteReplace(o.via(p.Subnet.Masked(), vtep)); err != nil {
		return fmt.Errorf("route %s via %s: %w", p.Subnet.Masked(), vtep, err)
	}
	o.peers[p.IP] = p
	return nil
}

func (o *overlay) via(dst netip.Prefix, vtep netip.Addr) *netlink.Route {
	return &netlink.Route{LinkIndex: o.link, Dst: ipNet(dst.Addr(), dst.Bits()), Gw: vtep.AsSlice(), Flags: int(netlink.FLAG_ONLINK)}
}

// addRemote routes a remote instance's instance IP to its worker's VTEP. Local instances
// need no route: their worker's bridge holds them.
func (o *overlay) addRemote(in *netsetup.Instance) error {
	if !in.Remote() {
		return nil
	}
	p, ok := o.peers[in.NodeIP]
	if !ok {
		return fmt.Errorf("instance %s runs on node IP %s, which is no peer of this worker", in.Name, in.NodeIP)
	}
	vtep, _ := VTEP(p.Subnet, p.IP)
	rt := o.via(netip.PrefixFrom(in.InstanceIP, 32), vtep)
	if err := o.h.RouteReplace(rt); err != nil {
		return fmt.Errorf("route instance IP %s of %s via %s: %w", in.InstanceIP, in.Name, vtep, err)
	}
	o.routes[in.InstanceIP] = rt
	return nil
}

// removeRemote deletes a remote instance's route.
func (o *overlay) removeRemote(instanceIP netip.Addr) error {
	rt, ok := o.routes[instanceIP]
	if !ok {
		return nil
	}
	delete(o.routes, instanceIP)
	if err := o.h.RouteDel(rt); err != nil && !errors.Is(err, unix.ESRCH) {
		return fmt.Errorf("remove route to instance IP %s: %w", instanceIP, err)
	}
	return nil
}

// destroy deletes the device, and with it every route, neighbour and FDB entry on it, and
// closes the handle. Nothing is left to delete once the namespace is gone.
func (o *overlay) destroy() error {
	var err error
	if o.link != 0 && o.ns.Handle().IsOpen() {
		if e := o.h.LinkDel(&netlink.Vxlan{LinkAttrs: netlink.LinkAttrs{Index: o.link}}); e != nil && !errors.Is(e, unix.ENODEV) {
			err = fmt.Errorf("delete vxlan device %s: %w", VXLANDevice, e)
		}
	}
	o.link = 0
	o.h.Close()
	return err
}

// settings describe the overlay for meta.json.
func (o *overlay) settings() map[string]string {
	return map[string]string{
		"cross_worker": "kernel VXLAN, flannel vxlan backend style: one device " + VXLANDevice + " per worker (VNI " +
			strconv.Itoa(VXLANID) + ", dstport " + strconv.Itoa(VXLANPort) + ", local node IP, nolearning, mtu " + strconv.Itoa(o.mtu) +
			"); per peer a route to its subnet via its VTEP onlink, a permanent neighbour and FDB entry; a /32 route per remote instance IP for replies",
		"vxlan_outer": "udp checksum off, DF clear (kernel and flannel defaults): a " + strconv.Itoa(o.mtu) + "-byte inner packet is " +
			strconv.Itoa(o.mtu+VXLANOverhead) + " bytes on the underlay",
		"vxlan_choice": "a plain VXLAN device with static neighbours and FDB, not a collect-metadata one: what flannel-style clusters run",
	}
}

func ipNet(a netip.Addr, bits int) *net.IPNet {
	return &net.IPNet{IP: a.AsSlice(), Mask: net.CIDRMask(bits, a.BitLen())}
}
