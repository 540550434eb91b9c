package userspace

import (
	"bytes"
	"net/netip"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestTunnelSegmentsGSOPackets: a TCP packet beyond the overlay MTU from an eBPF worker (a GSO
// packet, its checksum partial) is written into the device as segments of at most the MTU,
// each with its own sequence number, length, IPv4 ID and valid checksums, the payload in
// order, FIN and PSH on the last one only. Anything else beyond the MTU is still dropped.
func TestTunnelSegmentsGSOPackets(t *testing.T) {
	_, w1 := newCluster(t)
	w0ip := netip.MustParseAddr(w0IP).As4()
	payload := make([]byte, 4000)
	for i := range payload {
		payload[i] = byte(i % 251)
	}
	big := build(t, spec{proto: "tcp", src: xClientIP, dst: xServer0NS, sport: 40000, dport: 7400, flags: "AF", seq: 1000,
		ack: 7, payload: payload, options: true})
	big[28+13] |= tcpPSH
	big = partial(big)

	var segs [][]byte
	seg := make([]byte, 1450)
	w1.receiveDatagram(w0ip, big, seg, func(p []byte) { segs = append(segs, append([]byte(nil), p...)) })
	require.Len(t, segs, 3, "4000 bytes in segments of 1450 - 28 - 20")
	var got []byte
	for i, s := range segs {
		assert.LessOrEqual(t, len(s), 1450)
		d := decode(t, s)
		assert.Equal(t, uint32(1000+len(got)), d.tcp.Seq)
		assert.Equal(t, uint16(77+i), d.ip.Id)
		assert.Equal(t, i == 2, d.tcp.FIN, "FIN on the last segment only")
		assert.Equal(t, i == 2, d.tcp.PSH, "PSH on the last segment only")
		assert.True(t, d.tcp.ACK)
		assert.Len(t, d.ip.Options, 8, "the IPv4 options in every segment")
		got = append(got, d.tcp.Payload...)
	}
	assert.True(t, bytes.Equal(payload, got), "the payload, whole and in order")
	assert.EqualValues(t, 1, w1.st.tunnel.segmented.Load())
	assert.EqualValues(t, 3, w1.st.tunnel.received.Load())

	segs = nil
	udp := build(t, spec{proto: "udp", src: xClientIP, dst: xServer0NS, sport: 40000, dport: 53, payload: payload})
	w1.receiveDatagram(w0ip, udp, seg, func(p []byte) { segs = append(segs, p) })
	stranger := netip.MustParseAddr(strangerIP).As4()
	w1.receiveDatagram(stranger, big, seg, func(p []byte) { segs = append(segs, p) })
	assert.Empty(t, segs)
	assert.EqualValues(t, 1, w1.st.tunnel.oversized.Load(), "a UDP datagram beyond the MTU is dropped")
	assert.EqualValues(t, 1, w1.st.tunnel.unknownPeer.Load(), "a stranger's packet is dropped, not segmented")
	assert.EqualValues(t, 1, w1.st.tunnel.segmented.Load())
}
