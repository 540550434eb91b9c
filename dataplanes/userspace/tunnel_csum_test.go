package userspace

import (
	"encoding/binary"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/edgebpf/edgebpf/internal/inetcsum"
)

// partial replaces pkt's TCP or UDP checksum with what a sending kernel leaves for the device
// (CHECKSUM_PARTIAL): the sum of the pseudo-header only, not complemented. An eBPF worker's
// tunnel carries packets so over a veth.
func partial(pkt []byte) []byte {
	p := append([]byte(nil), pkt...)
	h, _ := parseIPv4(p)
	off := map[uint8]int{protoTCP: 16, protoUDP: 6}[h.proto]
	binary.BigEndian.PutUint16(h.l4[off:], ^inetcsum.Fold(pseudoSum(h.src, h.dst, h.proto, len(h.l4))))
	return p
}

// TestTunnelCompletesPartialChecksums: a packet from an eBPF worker whose TCP or UDP checksum
// was left for a device to complete is written into the device with its checksum complete,
// forwarded unchanged and reverse-translated alike; a complete one stays as it is, and a UDP
// datagram without a checksum keeps none.
func TestTunnelCompletesPartialChecksums(t *testing.T) {
	w0, w1 := newCluster(t)
	syn := build(t, spec{proto: "tcp", src: xClientNS, dst: xSvc, sport: 40000, dport: 7400, flags: "S", seq: 1})
	wire := w0.tunnelled(t, syn, w1)
	assert.Equal(t, wire, w1.recv(w0.ip, partial(wire)), "forwarded with the checksum the packet should carry")
	synack := build(t, spec{proto: "tcp", src: xServer0NS, dst: xClientIP, sport: 7400, dport: 40000, flags: "SA", ack: 2})
	back := w1.tunnelled(t, synack, w0)
	want := w0.recv(w1.ip, back)
	assert.Equal(t, want, w0.recv(w1.ip, partial(back)), "reverse-translated with a complete checksum")
	decode(t, want)

	q := build(t, spec{proto: "udp", src: xClientNS, dst: xSvc, sport: 40001, dport: 53})
	wire = w0.tunnelled(t, q, w1)
	assert.Equal(t, wire, w1.recv(w0.ip, partial(wire)))
	assert.Equal(t, wire, w1.recv(w0.ip, wire), "a complete checksum stays as it is")

	none := build(t, spec{proto: "udp", src: xClientNS, dst: xSvc, sport: 40002, dport: 53, noUDPCsum: true})
	wire = w0.tunnelled(t, none, w1)
	assert.Equal(t, []byte{0, 0}, w1.recv(w0.ip, wire)[20+6:20+8], "no UDP checksum stays none")
}
