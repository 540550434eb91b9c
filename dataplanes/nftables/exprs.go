package nftables

import (
	"net"
	"net/netip"

	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// ipsDstNAT is the conntrack status bit of a destination-NATed connection (IPS_DST_NAT).
const ipsDstNAT = 1 << 5

// icmpPortUnreachable is the ICMP code of a refused datagram.
const icmpPortUnreachable = 3

// native32 encodes v as the kernel keeps host-order values in registers (numgen, ct status).
func native32(v uint32) []byte { return binaryutil.NativeEndian.PutUint32(v) }

// ipDaddr loads the IPv4 destination address into reg.
func ipDaddr(reg uint32) expr.Any {
	return &expr.Payload{DestRegister: reg, Base: expr.PayloadBaseNetworkHeader, Offset: 16, Len: 4}
}

// l4proto matches the transport protocol.
func l4proto(proto byte) []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{proto}},
	}
}

// tcpFlagsClear matches TCP segments with none of flags set.
func tcpFlagsClear(flags byte) []expr.Any {
	return []expr.Any{
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 13, Len: 1},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 1, Mask: []byte{flags}, Xor: []byte{0}},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{0}},
	}
}

// inPrefix matches destinations inside p.
func inPrefix(p netip.Prefix) []expr.Any {
	p = p.Masked()
	mask := []byte(net.CIDRMask(p.Bits(), 32))
	return []expr.Any{
		ipDaddr(1),
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: mask, Xor: make([]byte, 4)},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: p.Addr().AsSlice()},
	}
}

// endedLookup matches packets whose 5-tuple is in @ended: ip saddr . th sport . ip daddr .
// th dport . meta l4proto, each field in its own 32-bit register.
func (r *ruleset) endedLookup() []expr.Any {
	return []expr.Any{
		&expr.Payload{DestRegister: unix.NFT_REG32_00, Base: expr.PayloadBaseNetworkHeader, Offset: 12, Len: 4},
		&expr.Payload{DestRegister: unix.NFT_REG32_01, Base: expr.PayloadBaseTransportHeader, Offset: 0, Len: 2},
		&expr.Payload{DestRegister: unix.NFT_REG32_02, Base: expr.PayloadBaseNetworkHeader, Offset: 16, Len: 4},
		&expr.Payload{DestRegister: unix.NFT_REG32_03, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: unix.NFT_REG32_04},
		&expr.Lookup{SourceRegister: unix.NFT_REG32_00, SetName: r.ended.Name, SetID: r.ended.ID},
	}
}

func rejectTCP() []expr.Any {
	return []expr.Any{&expr.Reject{Type: unix.NFT_REJECT_TCP_RST}}
}

func rejectICMP() []expr.Any {
	return []expr.Any{&expr.Reject{Type: unix.NFT_REJECT_ICMP_UNREACH, Code: icmpPortUnreachable}}
}
