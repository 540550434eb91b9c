package userspace

import (
	"encoding/binary"

	"github.com/edgebpf/edgebpf/internal/inetcsum"
)

// IP protocol numbers the proxy understands.
const (
	protoICMP = 1
	protoTCP  = 6
	protoUDP  = 17
)

// ICMP types and destination-unreachable codes.
const (
	icmpEchoReply      = 0
	icmpUnreachable    = 3
	icmpEchoRequest    = 8
	icmpTimeExceeded   = 11
	icmpParamProblem   = 12
	codeHostUnreach    = 1
	codeProtoUnreach   = 2
	codePortUnreach    = 3
	codeAdminForbidden = 13
)

// TCP flags.
const (
	tcpFIN = 0x01
	tcpSYN = 0x02
	tcpRST = 0x04
	tcpACK = 0x10
)

// ipv4 is what the proxy reads from an IPv4 header. It refers into the packet; l4 is the
// payload up to the header's total length (trailing bytes are ignored).
type ipv4 struct {
	ihl      int // header length in bytes, options included
	total    int
	proto    uint8
	id       uint16
	mf       bool   // more fragments follow
	fragOff  uint16 // in 8-byte units
	src, dst [4]byte
	l4       []byte
}

// parseIPv4 reads the header of pkt. It fails on anything that is not a well-formed IPv4
// header whose lengths fit the bytes read: such packets are dropped.
func parseIPv4(pkt []byte) (ipv4, bool) {
	var h ipv4
	if len(pkt) < 20 || pkt[0]>>4 != 4 {
		return h, false
	}
	h.ihl = int(pkt[0]&0x0f) * 4
	h.total = int(binary.BigEndian.Uint16(pkt[2:]))
	if h.ihl < 20 || h.total < h.ihl || h.total > len(pkt) {
		return h, false
	}
	h.id = binary.BigEndian.Uint16(pkt[4:])
	frag := binary.BigEndian.Uint16(pkt[6:])
	h.mf = frag&0x2000 != 0
	h.fragOff = frag & 0x1fff
	h.proto = pkt[9]
	copy(h.src[:], pkt[12:16])
	copy(h.dst[:], pkt[16:20])
	h.l4 = pkt[h.ihl:h.total]
	return h, true
}

// Checksums follow RFC 1071 (the Internet checksum) and RFC 1624 (incremental update:
// HC' = ~(~HC + ~m + m') for each changed 16-bit word m -> m').

// checksum is the Internet checksum of b.
func checksum(b []byte) uint16 { return inetcsum.Checksum(b) }

// csumReplace4 updates checksum hc for a 32-bit field changed from old to new (RFC 1624).
func csumReplace4(hc uint16, old, new [4]byte) uint16 {
	sum := uint32(^hc)
	sum += uint32(^(uint16(old[0])<<8 | uint16(old[1])))
	sum += uint32(^(uint16(old[2])<<8 | uint16(old[3])))
	sum += uint32(uint16(new[0])<<8 | uint16(new[1]))
	sum += uint32(uint16(new[2])<<8 | uint16(new[3]))
	return inetcsum.Fold(sum)
}

// rewriteAddrs sets the IPv4 source and destination of pkt (header h) to src and dst and
// updates the IPv4 header checksum and, when the packet carries the transport header (not a
// later fragment), the TCP or UDP checksum, whose pseudo-header holds both addresses. A UDP
// checksum of 0 (none) stays 0; a computed 0 is sent as 0xffff (RFC 768).
func rewriteAddrs(pkt []byte, h *ipv4, src, dst [4]byte) {
	ipc := binary.BigEndian.Uint16(pkt[10:])
	ipc = csumReplace4(ipc, h.src, src)
	ipc = csumReplace4(ipc, h.dst, dst)
	binary.BigEndian.PutUint16(pkt[10:], ipc)
	copy(pkt[12:16], src[:])
	copy(pkt[16:20], dst[:])
	if h.fragOff == 0 {
		rewriteL4(h, src, dst)
	}
	h.src, h.dst = src, dst
}

// rewriteL4 updates the TCP or UDP checksum of h's transport header for the new addresses.
func rewriteL4(h *ipv4, src, dst [4]byte) {
	switch h.proto {
	case protoTCP:
		if len(h.l4) >= 18 {
			c := binary.BigEndian.Uint16(h.l4[16:])
			c = csumReplace4(csumReplace4(c, h.src, src), h.dst, dst)
			binary.BigEndian.PutUint16(h.l4[16:], c)
		}
	case protoUDP:
		if len(h.l4) >= 8 {
			c := binary.BigEndian.Uint16(h.l4[6:])
			if c == 0 {
				break
			}
			c = csumReplace4(csumReplace4(c, h.src, src), h.dst, dst)
			if c == 0 {
				c = 0xffff
			}
			binary.BigEndian.PutUint16(h.l4[6:], c)
		}
	}
}

// putIPv4Header writes a 20-byte IPv4 header without options into b.
func putIPv4Header(b []byte, total int, proto uint8, src, dst [4]byte) {
	b[0] = 0x45
	b[1] = 0
	binary.BigEndian.PutUint16(b[2:], uint16(total))
	binary.BigEndian.PutUint16(b[4:], 0)      // id
	binary.BigEndian.PutUint16(b[6:], 0x4000) // DF
	b[8] = 64                                 // TTL
	b[9] = proto
	b[10], b[11] = 0, 0
	copy(b[12:16], src[:])
	copy(b[16:20], dst[:])
	binary.BigEndian.PutUint16(b[10:], checksum(b[:20]))
}

// pseudoSum is the one's-complement sum of the TCP/UDP pseudo-header.
func pseudoSum(src, dst [4]byte, proto uint8, length int) uint32 {
	sum := inetcsum.Add(0, src[:])
	sum = inetcsum.Add(sum, dst[:])
	return sum + uint32(proto) + uint32(length)
}

// icmpQuoteMax bounds an ICMP error to 576 bytes in all, as RFC 1812 asks.
const icmpQuoteMax = 576 - 20 - 8

// replySize is how large a buffer buildRST and buildUnreachable need.
const replySize = 576

// buildUnreachable writes into out an ICMP destination unreachable with code for the
// offending packet pkt (header h), sent from the address pkt was sent to, and returns it.
func buildUnreachable(out, pkt []byte, h *ipv4, code uint8) []byte {
	quote := pkt[:h.total]
	if len(quote) > icmpQuoteMax {
		quote = quote[:icmpQuoteMax]
	}
	n := 20 + 8 + len(quote)
	out = out[:n]
	putIPv4Header(out, n, protoICMP, h.dst, h.src)
	icmp := out[20:]
	icmp[0], icmp[1] = icmpUnreachable, code
	clear(icmp[2:8])
	copy(icmp[8:], quote)
	binary.BigEndian.PutUint16(icmp[2:], checksum(icmp))
	return out
}

// buildRST writes into out the TCP reset that answers the segment in pkt (header h) as
// RFC 793 prescribes, sent from the address and port it was sent to, and returns it.
func buildRST(out []byte, h *ipv4) []byte {
	seg := h.l4
	out = out[:40]
	putIPv4Header(out, 40, protoTCP, h.dst, h.src)
	t := out[20:]
	copy(t[0:2], seg[2:4]) // source port: the one addressed
	copy(t[2:4], seg[0:2])
	flags := seg[13]
	if flags&tcpACK != 0 {
		copy(t[4:8], seg[8:12]) // seq = their ack
		clear(t[8:12])
		t[13] = tcpRST
	} else {
		clear(t[4:8])
		dataOff := int(seg[12]>>4) * 4
		segLen := len(seg) - dataOff
		if dataOff < 20 || segLen < 0 {
			segLen = 0
		}
		if flags&tcpSYN != 0 {
			segLen++
		}
		if flags&tcpFIN != 0 {
			segLen++
		}
		binary.BigEndian.PutUint32(t[8:12], binary.BigEndian.Uint32(seg[4:8])+uint32(segLen))
		t[13] = tcpRST | tcpACK
	}
	t[12] = 5 << 4
	clear(t[14:20]) // window, checksum, urgent pointer
	sum := inetcsum.Add(pseudoSum(h.dst, h.src, protoTCP, 20), t)
	binary.BigEndian.PutUint16(t[16:], inetcsum.Fold(sum))
	return out
}
