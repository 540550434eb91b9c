package tunnel

import (
	"encoding/binary"
	"errors"
	"net/netip"
	"testing"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/edgebpf/edgebpf/internal/inetcsum"
	"github.com/edgebpf/edgebpf/internal/testpkt"
)

// FuzzDecap runs the decapsulation on arbitrary frames whose checksums (outer IPv4, inner
// IPv4, inner TCP or UDP) are recomputed in software first, so that mutations reach past
// them. Whatever comes in, the program passes it on, drops it counting one cause, or delivers
// it counting one delivery; what it delivers is an IPv4 packet no longer than the overlay MTU,
// either the inner packet unchanged (to a local instance) or reverse-translated with checksums
// that still verify (a reply to the session the rig holds).
func FuzzDecap(f *testing.F) {
	r := newRig(f)
	key := tunnelPxSessionKey{Saddr: be32(netip.MustParseAddr("10.18.1.9")), Daddr: be32(netip.MustParseAddr("10.30.0.100")),
		Sport: htons(80), Dport: htons(40000), Proto: 6}
	s := tunnelPxSession{NewSaddr: be32(netip.MustParseAddr("10.30.5.1")), NewDaddr: be32(netip.MustParseAddr("10.18.0.50")),
		Ifindex: 3, Mac: [6]uint8{2, 0, 0, 0, 0, 0x50}, LastSeen: now(f) + 3600e9}
	if err := r.p.Shared().Sessions.Update(&key, &s, ebpf.UpdateAny); err != nil {
		f.Fatal(err)
	}
	reply := packet(testpkt.IPv4(testpkt.Spec{Proto: "tcp", Src: "10.18.1.9", Dst: "10.30.0.100", Sport: 80, Dport: 40000}))
	f.Add(testpkt.Tunnel(peerIP, localIP, Port, Port, forward()))
	f.Add(testpkt.Tunnel(peerIP, localIP, Port, Port, reply))
	f.Add(testpkt.Tunnel(peerIP, localIP, Port, Port, packet(testpkt.IPv4(testpkt.Spec{Proto: "tcp", IPOptions: true,
		Src: "10.30.0.100", Dst: "10.18.1.5", Sport: 1, Dport: 2}))))
	f.Add(testpkt.Tunnel("10.17.0.9", localIP, Port, Port, forward()))
	f.Add(testpkt.Tunnel(peerIP, localIP, Port, Port, testpkt.IPv6UDP()[14:]))
	f.Add(testpkt.ARP())
	f.Fuzz(func(t *testing.T, frame []byte) {
		if len(frame) < 34 || len(frame) > 4000 {
			return // the test run refuses shorter IPv4 frames; longer ones add nothing
		}
		frame = append([]byte(nil), frame...)
		wellFormed := fixChecksums(frame)
		before := r.stats(t)
		out := make([]byte, len(frame)+64)
		res, err := r.tu.objs.TunnelDecap.Run(&ebpf.RunOptions{Data: frame, DataOut: out})
		if errors.Is(err, unix.EINVAL) {
			return // the test run refuses frames no device would hand up (an IPv4 header shorter than 20 bytes)
		}
		if err != nil {
			t.Fatal(err)
		}
		after := r.stats(t)
		delivered := after.Delivered - before.Delivered
		reversed := after.Reversed - before.Reversed
		dropped := after.UnknownPeer + after.Truncated + after.Oversized + after.NotIPv4 + after.NoTarget + after.Fragments + after.Errors -
			(before.UnknownPeer + before.Truncated + before.Oversized + before.NotIPv4 + before.NoTarget + before.Fragments + before.Errors)
		switch res {
		case tcxNext:
			if delivered+reversed+dropped != 0 {
				t.Fatalf("passed on but counted: %+v -> %+v", before, after)
			}
		case tcShot:
			if dropped != 1 || delivered+reversed != 0 {
				t.Fatalf("dropped without one drop counted: %+v -> %+v", before, after)
			}
		case tcRedirect:
			if delivered+reversed != 1 || dropped != 0 {
				t.Fatalf("delivered without one delivery counted: %+v -> %+v", before, after)
			}
			inner := frame[14+int(frame[14]&0xf)*4+8 : 14+int(binary.BigEndian.Uint16(frame[14+2:]))]
			tot := int(binary.BigEndian.Uint16(out[14+2:]))
			if out[14]>>4 != 4 || tot > 1450 || tot != len(inner) {
				t.Fatalf("delivered a packet of %d bytes, version %d, from %d bytes", tot, out[14]>>4, len(inner))
			}
			if delivered == 1 && string(out[14:14+tot]) != string(inner) {
				t.Fatal("a packet delivered as it came was changed")
			}
			if reversed == 1 && wellFormed {
				verify(t, out[14:14+tot])
			}
		default:
			t.Fatalf("return code %d", res)
		}
	})
}

// fixChecksums recomputes, where the headers are there, the outer IPv4 header checksum and
// the inner IPv4 header and TCP or UDP checksums of a tunnel frame. It says whether the inner
// packet is a complete TCP or UDP packet whose checksums are now right.
func fixChecksums(frame []byte) bool {
	if binary.BigEndian.Uint16(frame[12:]) != 0x0800 {
		return false
	}
	ohl := int(frame[14]&0xf) * 4
	if ohl < 20 || 14+ohl+8 > len(frame) {
		return false
	}
	setCheck(frame[14:14+ohl], 10, nil)
	in := frame[14+ohl+8:]
	if otot := int(binary.BigEndian.Uint16(frame[14+2:])); otot >= ohl+8 && 14+otot <= len(frame) {
		in = frame[14+ohl+8 : 14+otot] // what follows is padding
	}
	if len(in) < 20 || in[0]>>4 != 4 {
		return false
	}
	ihl := int(in[0]&0xf) * 4
	tot := int(binary.BigEndian.Uint16(in[2:]))
	if ihl < 20 || ihl > len(in) {
		return false
	}
	setCheck(in[:ihl], 10, nil)
	if tot != len(in) || tot < ihl || binary.BigEndian.Uint16(in[6:])&0x3fff != 0 {
		return false
	}
	seg := in[ihl:tot]
	off := map[byte]int{6: 16, 17: 6}[in[9]]
	if off == 0 || len(seg) < off+2 || (in[9] == 6 && len(seg) < 20) {
		return false
	}
	var pseudo [12]byte
	copy(pseudo[:8], in[12:20])
	pseudo[9] = in[9]
	binary.BigEndian.PutUint16(pseudo[10:], uint16(len(seg)))
	setCheck(seg, off, pseudo[:])
	if in[9] == 17 && binary.BigEndian.Uint16(seg[off:]) == 0 {
		binary.BigEndian.PutUint16(seg[off:], 0xffff) // 0 would mean none
	}
	return true
}

// setCheck writes the Internet checksum of pseudo and b into b at off.
func setCheck(b []byte, off int, pseudo []byte) {
	b[off], b[off+1] = 0, 0
	binary.BigEndian.PutUint16(b[off:], inetcsum.Fold(inetcsum.Add(inetcsum.Add(0, pseudo), b)))
}
