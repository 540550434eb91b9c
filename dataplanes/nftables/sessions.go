package nftables

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// tuple is a session's original direction as the client sent it (before NAT).
type tuple struct {
	Src, Dst     netip.Addr
	Sport, Dport uint16
	Proto        uint8
}

// key encodes t as an element of @ended: each field of the concatenation padded to 32 bits.
func (t tuple) key() []byte {
	k := make([]byte, 20)
	copy(k[0:4], t.Src.AsSlice())
	binary.BigEndian.PutUint16(k[4:6], t.Sport)
	copy(k[8:12], t.Dst.AsSlice())
	binary.BigEndian.PutUint16(k[12:14], t.Dport)
	k[16] = t.Proto
	return k
}

// conntrack is the node namespace's connection tracking table, reached over netlink.
type conntrack struct{ h *netlink.Handle }

// sessionsTo lists the TCP and UDP sessions the node NATed to nsip: their reply comes from it.
func (c conntrack) sessionsTo(nsip netip.Addr) ([]tuple, error) {
	flows, err := c.h.ConntrackTableList(netlink.ConntrackTable, unix.AF_INET)
	if err != nil {
		return nil, fmt.Errorf("list conntrack entries: %w", err)
	}
	var out []tuple
	for _, f := range flows {
		p := f.Forward.Protocol
		if (p != unix.IPPROTO_TCP && p != unix.IPPROTO_UDP) || !ipIs(f.Reverse.SrcIP, nsip) {
			continue
		}
		src, _ := netip.AddrFromSlice(f.Forward.SrcIP.To4())
		dst, _ := netip.AddrFromSlice(f.Forward.DstIP.To4())
		out = append(out, tuple{Src: src, Dst: dst, Sport: f.Forward.SrcPort, Dport: f.Forward.DstPort, Proto: p})
	}
	return out, nil
}

// forget deletes every conntrack entry to or from nsip and returns how many there were.
func (c conntrack) forget(nsip netip.Addr) (uint, error) {
	n, err := c.h.ConntrackDeleteFilters(netlink.ConntrackTable, unix.AF_INET, involving(nsip))
	if err != nil {
		return n, fmt.Errorf("delete conntrack entries of %s: %w", nsip, err)
	}
	return n, nil
}

// involving matches flows that the instance at its namespace IP answers or started.
type involving netip.Addr

func (a involving) MatchConntrackFlow(f *netlink.ConntrackFlow) bool {
	return ipIs(f.Reverse.SrcIP, netip.Addr(a)) || ipIs(f.Forward.SrcIP, netip.Addr(a))
}

func ipIs(ip net.IP, a netip.Addr) bool {
	b, ok := netip.AddrFromSlice(ip.To4())
	return ok && b == a
}
