package userspace

import "encoding/binary"

// TCP flags only segmentation needs.
const (
	tcpPSH = 0x08
	tcpCWR = 0x80
)

// segmentTCP cuts pkt, one whole IPv4 TCP packet longer than mtu, into segments of at most
// mtu bytes, as a NIC's TCP segmentation offload would, and calls fn with each, built in seg
// (at least mtu bytes, reused for every segment): every segment carries the packet's IPv4 and
// TCP headers, options included, its own share of the payload, sequence number, total length,
// IPv4 ID (the packet's, plus its index) and header checksum; FIN and PSH stay on the last
// segment, CWR on the first. The TCP checksum is left as it was: receive computes it afresh.
// It returns false, calling nothing, when pkt is no such packet.
func segmentTCP(pkt []byte, mtu int, seg []byte, fn func([]byte)) bool {
	h, ok := parseIPv4(pkt)
	if !ok || h.total != len(pkt) || h.proto != protoTCP || h.mf || h.fragOff != 0 || len(h.l4) < 20 {
		return false
	}
	thl := int(h.l4[12]>>4) * 4
	hdr := h.ihl + thl
	if thl < 20 || thl > len(h.l4) || hdr >= mtu || len(pkt) <= mtu || len(seg) < mtu {
		return false
	}
	payload, mss := pkt[hdr:], mtu-hdr
	seq, flags := binary.BigEndian.Uint32(h.l4[4:]), h.l4[13]
	for i, off := 0, 0; off < len(payload); i, off = i+1, off+mss {
		end := min(off+mss, len(payload))
		n := copy(seg, pkt[:hdr])
		n += copy(seg[n:], payload[off:end])
		s := seg[:n]
		binary.BigEndian.PutUint16(s[2:], uint16(n))
		binary.BigEndian.PutUint16(s[4:], h.id+uint16(i))
		s[10], s[11] = 0, 0
		binary.BigEndian.PutUint16(s[10:], checksum(s[:h.ihl]))
		t := s[h.ihl:]
		binary.BigEndian.PutUint32(t[4:], seq+uint32(off))
		f := flags
		if end < len(payload) {
			f &^= tcpFIN | tcpPSH
		}
		if off > 0 {
			f &^= tcpCWR
		}
		t[13] = f
		fn(s)
	}
	return true
}
