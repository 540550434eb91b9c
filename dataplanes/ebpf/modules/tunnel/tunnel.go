// Package tunnel is the tunnel module of the eBPF manager: Oakestra's tunnel between the
// workers of a cluster, in the kernel, on Oakestra's wire format (the translated IPv4 packet,
// unchanged, as the whole payload of one UDP datagram to the peer's node IP, port 50103;
// outer UDP checksum 0; reference.md §8).
//
// The two ends live in two programs that share the proxy module's tables. Sending is the
// proxy's (bpf/proxy.c): a session whose backend is an instance on another worker is
// translated, wrapped (bpf_skb_adjust_room with the IPv4 and UDP encapsulation flags, outer
// headers written by the program) and sent out the underlay link with bpf_redirect_neigh.
// The proxy only does so while this module's switch (the proxy's px_tunnel map) is on;
// without it, packets for remote instances are dropped and counted. Receiving is this
// module's (bpf/tunnel.c) on the TCX ingress of the worker's underlay link, attached by the
// manager as a node program: it checks the datagram (a known peer, complete, not oversized,
// IPv4 inside), strips the outer headers and delivers with bpf_redirect_peer: a reply is
// reverse-translated from the proxy's session; any other packet goes to the local instance it
// is addressed to, and its replies are tunnelled back unchanged (a pass-through session in
// the proxy's table), so that only the worker holding the session translates, as Oakestra's
// NetManager does.
//
// A packet too long for the underlay once wrapped (more than the underlay's MTU minus 28
// bytes; only a misconfigured overlay MTU produces one) is dropped and counted on the sending
// side, not answered with ICMP fragmentation needed: the overlay MTU (1450 on 1500) is what
// keeps packets small, as in Oakestra. GSO packets keep their segment size.
//
// Note: the tunnel could have been a module of its own after the proxy in the veth chain,
// encapsulating what the proxy passed on. It was not: the proxy decides at translation time
// where a session goes, and a second program would look the destination up again and cost a
// chain hop per packet; and the receive side needs the proxy's sessions anyway. So the
// sending path is in the proxy's object, switched on by this module, and the receiving path
// is this module's object loaded with the proxy's maps in place of its own (MapReplacements,
// through the manager's Linker hook, which also keeps the proxy from being deleted first).
package tunnel

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"slices"

	"github.com/cilium/ebpf"

	"github.com/edgebpf/edgebpf/dataplanes/ebpf/manager"
	"github.com/edgebpf/edgebpf/dataplanes/ebpf/modules/proxy"
	"github.com/edgebpf/edgebpf/netsetup"
)

// Port is the tunnel's UDP port, Oakestra's default (netsetup.TunnelPort).
const Port = netsetup.TunnelPort

// HeaderLen is what the tunnel adds to a packet: an outer IPv4 header without options and a
// UDP header.
const HeaderLen = 28

// Underlay is what the tunnel needs of the worker's underlay.
type Underlay struct {
	Link  string       // the underlay link in the node namespace
	Index int          // its ifindex there
	IP    netip.Addr   // this worker's node IP
	MTU   int          // the underlay's MTU
	Peers []netip.Addr // the other workers' node IPs
}

// Config is the tunnel module's effective configuration (it takes none: everything comes
// from the worker's underlay).
type Config struct {
	Port       int      `json:"port"`
	Link       string   `json:"link"`
	NodeIP     string   `json:"node_ip"`
	Peers      []string `json:"peers"`
	MTU        int      `json:"underlay_mtu"`
	OverlayMTU int      `json:"overlay_mtu"`
}

// Factory creates the tunnel for a worker of a cluster; dataplanes/ebpf/modules lists it as
// "tunnel". It needs the proxy module deployed first.
func Factory(node *netsetup.Node, config json.RawMessage) (manager.Module, error) {
	if len(config) > 0 && string(config) != "null" {
		var m map[string]json.RawMessage
		if err := json.Unmarshal(config, &m); err != nil || len(m) > 0 {
			return nil, fmt.Errorf("%w: the tunnel takes no configuration (it uses the worker's underlay): send {} or leave config out", manager.ErrBadConfig)
		}
	}
	if node == nil {
		return nil, errors.New("tunnel: no node")
	}
	u, ok := underlayOf(node)
	if !ok {
		return nil, fmt.Errorf("%w: the tunnel joins the workers of a cluster, and node %s is not one (it has no underlay link)", manager.ErrDependency, node.Name())
	}
	mac, err := bridgeMAC(node)
	if err != nil {
		return nil, err
	}
	return New(u, node.Config().MTU, node.Config().ServiceRange, mac)
}

// bridgeMAC reads the node bridge's MAC address: delivered packets come from it.
func bridgeMAC(node *netsetup.Node) (net.HardwareAddr, error) {
	h, err := node.NS.Netlink()
	if err != nil {
		return nil, err
	}
	defer h.Close()
	l, err := h.LinkByName(node.Bridge)
	if err != nil {
		return nil, fmt.Errorf("tunnel: find bridge %s: %w", node.Bridge, err)
	}
	return l.Attrs().HardwareAddr, nil
}

// Tunnel is the loaded tunnel module of one worker. It loads its program when the manager
// links it to the proxy (Link).
type Tunnel struct {
	u          Underlay
	overlayMTU int
	services   netip.Prefix
	bridgeMAC  net.HardwareAddr

	shared proxy.Shared
	proxy  *proxy.Proxy
	objs   tunnelObjects
	loaded bool
}

// New returns a tunnel over u for a node whose instances have overlayMTU, whose service range
// is services and whose bridge has bridgeMAC; Link (or LinkProxy) loads it.
func New(u Underlay, overlayMTU int, services netip.Prefix, bridgeMAC net.HardwareAddr) (*Tunnel, error) {
	switch {
	case !u.IP.Is4():
		return nil, fmt.Errorf("tunnel: node IP %v is not an IPv4 address", u.IP)
	case u.Index <= 0:
		return nil, fmt.Errorf("tunnel: underlay link %q has no ifindex", u.Link)
	case overlayMTU < 68 || u.MTU < overlayMTU+HeaderLen:
		return nil, fmt.Errorf("tunnel: the underlay's MTU %d leaves no room for the %d-byte tunnel header above the overlay MTU %d", u.MTU, HeaderLen, overlayMTU)
	case len(bridgeMAC) != 6:
		return nil, errors.New("tunnel: the bridge has no Ethernet address")
	}
	return &Tunnel{u: u, overlayMTU: overlayMTU, services: services, bridgeMAC: bridgeMAC}, nil
}

// Link finds the proxy module and loads the tunnel on its maps (manager.Linker).
func (t *Tunnel) Link(find func(name string) (manager.Module, bool)) error {
	mod, ok := find("proxy")
	if !ok {
		return fmt.Errorf("%w: the tunnel carries the proxy's sessions: create the proxy module first", manager.ErrDependency)
	}
	p, ok := mod.(*proxy.Proxy)
	if !ok {
		return fmt.Errorf("%w: the module named proxy is not the service proxy", manager.ErrDependency)
	}
	return t.LinkProxy(p)
}

// LinkProxy loads the decapsulation on p's maps and switches p's tunnel on.
func (t *Tunnel) LinkProxy(p *proxy.Proxy) error {
	if t.loaded {
		return errors.New("tunnel: already linked")
	}
	sh := p.Shared()
	spec, err := loadTunnel()
	if err != nil {
		return fmt.Errorf("load tunnel spec: %w", err)
	}
	c := tunnelTunConfig{TcpIdleNs: uint64(sh.TCPIdle), UdpIdleNs: uint64(sh.UDPIdle), ClosingNs: uint64(sh.Closing),
		LocalIp: be32(t.u.IP), ServiceNet: be32(t.services.Masked().Addr()), ServiceMask: mask(t.services.Bits()), Mtu: uint32(t.overlayMTU)}
	copy(c.BridgeMac[:], t.bridgeMAC)
	if err := spec.Variables["config"].Set(c); err != nil {
		return fmt.Errorf("configure tunnel: %w", err)
	}
	opts := &ebpf.CollectionOptions{MapReplacements: map[string]*ebpf.Map{
		"px_sessions": sh.Sessions, "px_clients": sh.Clients, "px_tunnel": sh.Tunnel}}
	if err := spec.LoadAndAssign(&t.objs, opts); err != nil {
		return fmt.Errorf("load tunnel program: %w", err)
	}
	one := uint32(1)
	for _, peer := range t.u.Peers {
		if err := t.objs.TunPeers.Update(be32(peer), one, ebpf.UpdateAny); err != nil {
			return errors.Join(fmt.Errorf("tunnel: add peer %s: %w", peer, err), t.objs.Close())
		}
	}
	sw := tunnelPxUnderlay{LocalIp: be32(t.u.IP), Ifindex: uint32(t.u.Index), Mtu: uint32(t.u.MTU)}
	if err := sh.Tunnel.Update(uint32(0), &sw, ebpf.UpdateAny); err != nil {
		return errors.Join(fmt.Errorf("tunnel: switch the proxy's tunnel on: %w", err), t.objs.Close())
	}
	t.shared, t.proxy, t.loaded = sh, p, true
	return nil
}

// Programs returns none: the tunnel has no programs on the instances' veths.
func (t *Tunnel) Programs() (ingress, egress *ebpf.Program) { return nil, nil }

// NodePrograms puts the decapsulation on the underlay link's ingress (manager.NodeAttacher).
func (t *Tunnel) NodePrograms() []manager.NodeProgram {
	if !t.loaded {
		return nil
	}
	return []manager.NodeProgram{{Link: t.u.Link, Index: t.u.Index, Attach: ebpf.AttachTCXIngress, Program: t.objs.TunnelDecap}}
}

// Decap is the decapsulation program, for BPF test runs and benchmarks.
func (t *Tunnel) Decap() *ebpf.Program { return t.objs.TunnelDecap }

// Attached has nothing to do: the proxy keeps the instances' table.
func (t *Tunnel) Attached(*netsetup.Instance) error { return nil }

// Detached has nothing to do.
func (t *Tunnel) Detached(*netsetup.Instance) {}

// Config returns the effective configuration.
func (t *Tunnel) Config() any {
	c := Config{Port: Port, Link: t.u.Link, NodeIP: t.u.IP.String(), Peers: []string{}, MTU: t.u.MTU, OverlayMTU: t.overlayMTU}
	for _, p := range t.u.Peers {
		c.Peers = append(c.Peers, p.String())
	}
	slices.Sort(c.Peers)
	return c
}

// Close switches the proxy's tunnel off and releases the program. It is idempotent.
func (t *Tunnel) Close() error {
	if !t.loaded {
		return nil
	}
	t.loaded = false
	err := t.shared.Tunnel.Update(uint32(0), &tunnelPxUnderlay{}, ebpf.UpdateAny)
	if err != nil {
		err = fmt.Errorf("tunnel: switch the proxy's tunnel off: %w", err)
	}
	return errors.Join(err, t.objs.Close())
}

// Stats are the tunnel's counters, both ends: the receiving end's from this module's program,
// the sending end's from the proxy's.
type Stats struct {
	Delivered   uint64 `json:"delivered"`
	Reversed    uint64 `json:"reverse_translated"`
	UnknownPeer uint64 `json:"unknown_peer_dropped"`
	Truncated   uint64 `json:"truncated_dropped"`
	Oversized   uint64 `json:"oversized_dropped"`
	NotIPv4     uint64 `json:"not_ipv4_dropped"`
	NoTarget    uint64 `json:"no_target_dropped"`
	Fragments   uint64 `json:"fragments_dropped"`
	Errors      uint64 `json:"errors"`
	Sent        uint64 `json:"sent"`
	TooBig      uint64 `json:"too_big_dropped"`
	SendErrors  uint64 `json:"send_errors"`
}

// Stats reads the counters, summed over CPUs.
func (t *Tunnel) Stats() (Stats, error) {
	if !t.loaded {
		return Stats{}, errors.New("tunnel is not loaded")
	}
	var sums [9]uint64
	var vals []uint64
	for i := range sums {
		if err := t.objs.TunStats.Lookup(uint32(i), &vals); err != nil {
			return Stats{}, fmt.Errorf("read tunnel stats: %w", err)
		}
		for _, v := range vals {
			sums[i] += v
		}
	}
	ps, err := t.proxy.Stats()
	if err != nil {
		return Stats{}, err
	}
	return Stats{Delivered: sums[0], Reversed: sums[1], UnknownPeer: sums[2], Truncated: sums[3], Oversized: sums[4],
		NotIPv4: sums[5], NoTarget: sums[6], Fragments: sums[7], Errors: sums[8],
		Sent: ps.Tunnelled, TooBig: ps.TunnelTooBig, SendErrors: ps.TunnelErrors}, nil
}

// Routes serves GET /stats.
func (t *Tunnel) Routes() []manager.Route {
	return []manager.Route{{Method: "GET", Pattern: "/stats", Summary: "tunnel counters: packets sent, delivered, reverse-translated, and drops by cause",
		Handler: func(w http.ResponseWriter, r *http.Request) {
			st, err := t.Stats()
			if err != nil {
				manager.WriteError(w, http.StatusInternalServerError, err)
				return
			}
			manager.WriteJSON(w, http.StatusOK, st)
		}}}
}

// be32 returns an IPv4 address as the uint32 whose memory holds its network-order bytes.
func be32(a netip.Addr) uint32 {
	b := a.As4()
	return binary.NativeEndian.Uint32(b[:])
}

// mask returns a prefix length's netmask as be32 does an address.
func mask(bits int) uint32 {
	var m [4]byte
	binary.BigEndian.PutUint32(m[:], ^uint32(0)<<(32-bits))
	return binary.NativeEndian.Uint32(m[:])
}
