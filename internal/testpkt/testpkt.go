// Package testpkt builds Ethernet frames for BPF program tests with gopacket: TCP, UDP and
// ICMP over IPv4 (with or without IPv4 options), ARP and IPv6, with correct checksums.
package testpkt

import (
	"net"
	"net/netip"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
)

var (
	srcMAC = net.HardwareAddr{0x02, 0, 0, 0, 0, 1}
	dstMAC = net.HardwareAddr{0x02, 0, 0, 0, 0, 2}
)

// Spec describes an IPv4 frame.
type Spec struct {
	Proto      string // "tcp", "udp" or "icmp"
	Src, Dst   string // IPv4 addresses
	Sport      uint16
	Dport      uint16
	SYN        bool // a SYN without ACK; every other TCP segment carries ACK
	FIN, RST   bool // TCP flags added to the segment
	Payload    []byte
	IPOptions  bool // add an 8-byte IPv4 options field (IHL 7)
	FragOffset uint16
	MoreFrags  bool // set the IPv4 more-fragments flag (a first fragment has it and offset 0)
}

// IPv4 builds the frame s describes.
func IPv4(s Spec) []byte {
	eth := &layers.Ethernet{SrcMAC: srcMAC, DstMAC: dstMAC, EthernetType: layers.EthernetTypeIPv4}
	ip := &layers.IPv4{Version: 4, TTL: 64, SrcIP: addr(s.Src), DstIP: addr(s.Dst), FragOffset: s.FragOffset}
	if s.MoreFrags {
		ip.Flags = layers.IPv4MoreFragments
	}
	if s.IPOptions {
		ip.Options = []layers.IPv4Option{{OptionType: 1}, {OptionType: 1}, {OptionType: 1}, {OptionType: 1},
			{OptionType: 1}, {OptionType: 1}, {OptionType: 1}, {OptionType: 0}}
	}
	var l4 []gopacket.SerializableLayer
	switch s.Proto {
	case "tcp":
		ip.Protocol = layers.IPProtocolTCP
		t := &layers.TCP{SrcPort: layers.TCPPort(s.Sport), DstPort: layers.TCPPort(s.Dport), SYN: s.SYN, ACK: !s.SYN,
			FIN: s.FIN, RST: s.RST, Window: 1024}
		_ = t.SetNetworkLayerForChecksum(ip)
		l4 = append(l4, t)
	case "udp":
		ip.Protocol = layers.IPProtocolUDP
		u := &layers.UDP{SrcPort: layers.UDPPort(s.Sport), DstPort: layers.UDPPort(s.Dport)}
		_ = u.SetNetworkLayerForChecksum(ip)
		l4 = append(l4, u)
	case "icmp":
		ip.Protocol = layers.IPProtocolICMPv4
		l4 = append(l4, &layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(layers.ICMPv4TypeEchoRequest, 0), Id: 1, Seq: 1})
	default:
		ip.Protocol = layers.IPProtocol(47) // GRE: an "other" protocol
	}
	payload := s.Payload
	if payload == nil {
		payload = make([]byte, 32)
	}
	return serialize(append(append([]gopacket.SerializableLayer{eth, ip}, l4...), gopacket.Payload(payload))...)
}

// ARP builds an ARP request.
func ARP() []byte {
	eth := &layers.Ethernet{SrcMAC: srcMAC, DstMAC: layers.EthernetBroadcast, EthernetType: layers.EthernetTypeARP}
	arp := &layers.ARP{AddrType: layers.LinkTypeEthernet, Protocol: layers.EthernetTypeIPv4, HwAddressSize: 6, ProtAddressSize: 4,
		Operation: layers.ARPRequest, SourceHwAddress: srcMAC, SourceProtAddress: []byte{10, 18, 0, 2},
		DstHwAddress: make([]byte, 6), DstProtAddress: []byte{10, 18, 0, 3}}
	return serialize(eth, arp, gopacket.Payload(make([]byte, 18)))
}

// IPv6UDP builds a UDP datagram over IPv6.
func IPv6UDP() []byte {
	eth := &layers.Ethernet{SrcMAC: srcMAC, DstMAC: dstMAC, EthernetType: layers.EthernetTypeIPv6}
	ip := &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: layers.IPProtocolUDP, SrcIP: net.ParseIP("fd00::1"), DstIP: net.ParseIP("fd00::2")}
	u := &layers.UDP{SrcPort: 1000, DstPort: 2000}
	_ = u.SetNetworkLayerForChecksum(ip)
	return serialize(eth, ip, u, gopacket.Payload(make([]byte, 16)))
}

func addr(s string) net.IP { return net.IP(netip.MustParseAddr(s).AsSlice()) }

func serialize(ls ...gopacket.SerializableLayer) []byte {
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ls...); err != nil {
		panic("testpkt: " + err.Error())
	}
	return buf.Bytes()
}

// Tunnel wraps inner, an IPv4 packet without Ethernet header, as Oakestra's tunnel does: one
// UDP datagram from src:sport to dst:dport whose whole payload is inner, outer IPv4 header
// checksum right, outer UDP checksum 0 (none).
func Tunnel(src, dst string, sport, dport uint16, inner []byte) []byte {
	eth := &layers.Ethernet{SrcMAC: srcMAC, DstMAC: dstMAC, EthernetType: layers.EthernetTypeIPv4}
	ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolUDP, Flags: layers.IPv4DontFragment, SrcIP: addr(src), DstIP: addr(dst)}
	u := &layers.UDP{SrcPort: layers.UDPPort(sport), DstPort: layers.UDPPort(dport)}
	_ = u.SetNetworkLayerForChecksum(ip)
	frame := serialize(eth, ip, u, gopacket.Payload(inner))
	frame[14+20+6], frame[14+20+7] = 0, 0 // no UDP checksum
	return frame
}
