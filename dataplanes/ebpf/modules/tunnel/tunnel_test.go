package tunnel

import (
	"encoding/binary"
	"net"
	"net/netip"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/edgebpf/edgebpf/dataplanes/ebpf/modules/proxy"
	"github.com/edgebpf/edgebpf/internal/inetcsum"
	"github.com/edgebpf/edgebpf/internal/testenv"
	"github.com/edgebpf/edgebpf/internal/testpkt"
)

func TestMain(m *testing.M) { testenv.Main(m) }

const (
	tcShot     = 2
	tcRedirect = 7
	tcxNext    = 0xffffffff // TCX_NEXT (-1) as the run's return value
)

var (
	localIP   = "10.17.0.2"
	peerIP    = "10.17.0.1"
	brMAC     = net.HardwareAddr{2, 0xeb, 0, 0, 0, 1}
	serverMAC = []byte{2, 0, 0, 0, 0, 0x55}
)

// rig is a proxy with a tunnel linked to it, on a standalone node (the BPF test runs need no
// cluster), with one local instance, the server 10.18.1.5, instance IP 10.30.0.5, on veth 7.
type rig struct {
	p  *proxy.Proxy
	tu *Tunnel
}

func newRig(t testing.TB) *rig {
	node := testenv.Node(t)
	p, err := proxy.New(node, nil)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, p.Close()) })
	tu, err := New(Underlay{Link: "ebu0", Index: 1, IP: netip.MustParseAddr(localIP), MTU: 1500,
		Peers: []netip.Addr{netip.MustParseAddr(peerIP)}}, 1450, netip.MustParsePrefix("10.30.0.0/16"), brMAC)
	require.NoError(t, err)
	require.NoError(t, tu.LinkProxy(p))
	t.Cleanup(func() { require.NoError(t, tu.Close()) })
	r := &rig{p: p, tu: tu}
	cl := tunnelPxClient{InstanceIp: be32(netip.MustParseAddr("10.30.0.5")), Ifindex: 7}
	copy(cl.Mac[:], serverMAC)
	require.NoError(t, p.Shared().Clients.Update(be32(netip.MustParseAddr("10.18.1.5")), &cl, ebpf.UpdateAny))
	return r
}

func (r *rig) decap(t testing.TB, frame []byte) (uint32, []byte) {
	t.Helper()
	out := make([]byte, len(frame)+64)
	res, err := r.tu.objs.TunnelDecap.Run(&ebpf.RunOptions{Data: frame, DataOut: out})
	require.NoError(t, err)
	return res, out[:len(frame)]
}

func (r *rig) stats(t testing.TB) Stats {
	t.Helper()
	st, err := r.tu.Stats()
	require.NoError(t, err)
	return st
}

// forward is what the client's worker sends for a UDP datagram from the client (instance IP
// 10.30.0.100) to the server's namespace IP.
func forward() []byte {
	return packet(testpkt.IPv4(testpkt.Spec{Proto: "udp", Src: "10.30.0.100", Dst: "10.18.1.5", Sport: 40000, Dport: 53,
		Payload: []byte("forward payload")}))
}

func TestDecapDeliversToLocalInstance(t *testing.T) {
	r := newRig(t)
	inner := forward()
	res, out := r.decap(t, testpkt.Tunnel(peerIP, localIP, Port, Port, inner))
	require.EqualValues(t, tcRedirect, res, "%+v", r.stats(t))
	out = out[:14+len(inner)]
	assert.Equal(t, serverMAC, out[0:6], "to the instance's MAC")
	assert.Equal(t, []byte(brMAC), out[6:12], "from the bridge's MAC")
	assert.Equal(t, []byte{0x08, 0x00}, out[12:14])
	assert.Equal(t, inner, out[14:], "the inner packet is delivered unchanged")
	assert.EqualValues(t, 1, r.stats(t).Delivered)

	// Its replies go back through the tunnel unchanged: a pass-through session names the
	// peer's node IP.
	key := tunnelPxSessionKey{Saddr: be32(netip.MustParseAddr("10.18.1.5")), Daddr: be32(netip.MustParseAddr("10.30.0.100")),
		Sport: htons(53), Dport: htons(40000), Proto: 17}
	var s tunnelPxSession
	require.NoError(t, r.p.Shared().Sessions.Lookup(&key, &s))
	assert.Equal(t, be32(netip.MustParseAddr(peerIP)), s.NodeIp)
	assert.Equal(t, key.Saddr, s.NewSaddr, "no translation")
	assert.Equal(t, key.Daddr, s.NewDaddr, "no translation")
	assert.EqualValues(t, 7, s.InIfindex, "replies come from the instance's veth")
}

func TestDecapReverseTranslatesReplies(t *testing.T) {
	for _, proto := range []string{"tcp", "udp"} {
		t.Run(proto, func(t *testing.T) {
			r := newRig(t)
			// This worker's client 10.18.0.50 (instance IP 10.30.0.100, veth 3) has a session
			// with the server 10.18.1.9 on the peer, reached through service IP 10.30.5.1.
			pn := map[string]uint8{"tcp": 6, "udp": 17}[proto]
			key := tunnelPxSessionKey{Saddr: be32(netip.MustParseAddr("10.18.1.9")), Daddr: be32(netip.MustParseAddr("10.30.0.100")),
				Sport: htons(80), Dport: htons(40000), Proto: pn}
			s := tunnelPxSession{NewSaddr: be32(netip.MustParseAddr("10.30.5.1")), NewDaddr: be32(netip.MustParseAddr("10.18.0.50")),
				Ifindex: 3, Mac: [6]uint8{2, 0, 0, 0, 0, 0x50}, LastSeen: now(t)}
			require.NoError(t, r.p.Shared().Sessions.Update(&key, &s, ebpf.UpdateAny))
			inner := packet(testpkt.IPv4(testpkt.Spec{Proto: proto, Src: "10.18.1.9", Dst: "10.30.0.100", Sport: 80, Dport: 40000,
				Payload: []byte("the reply")}))
			res, out := r.decap(t, testpkt.Tunnel(peerIP, localIP, Port, Port, inner))
			require.EqualValues(t, tcRedirect, res, "%+v", r.stats(t))
			out = out[:14+len(inner)]
			assert.Equal(t, []byte{2, 0, 0, 0, 0, 0x50}, out[0:6], "to the client's MAC")
			assert.Equal(t, []byte(brMAC), out[6:12])
			ip := verify(t, out[14:])
			assert.Equal(t, "10.30.5.1", ip.SrcIP.String(), "from the service IP the client addressed")
			assert.Equal(t, "10.18.0.50", ip.DstIP.String(), "to the client's namespace IP")
			assert.Equal(t, []byte("the reply"), ip.LayerPayload()[len(ip.LayerPayload())-9:])
			assert.EqualValues(t, 1, r.stats(t).Reversed)
		})
	}
}

func TestDecapDropsAndCounts(t *testing.T) {
	inner := forward()
	ipv6 := testpkt.IPv6UDP()[14:]
	cut := func(b []byte, n int) []byte { return b[:len(b)-n] }
	set16 := func(b []byte, off int, v uint16) []byte {
		b = append([]byte(nil), b...)
		binary.BigEndian.PutUint16(b[off:], v)
		return b
	}
	big := packet(testpkt.IPv4(testpkt.Spec{Proto: "udp", Src: "10.30.0.100", Dst: "10.18.1.5", Sport: 1, Dport: 2, Payload: make([]byte, 1460-28)}))
	frag := testpkt.Tunnel(peerIP, localIP, Port, Port, inner)
	frag = set16(frag, 14+6, 0x2000) // more fragments
	frag = fixIPCheck(frag)
	for _, c := range []struct {
		name  string
		frame []byte
		count func(Stats) uint64
	}{
		{"unknown peer", testpkt.Tunnel("10.17.0.9", localIP, Port, Port, inner), func(s Stats) uint64 { return s.UnknownPeer }},
		{"outer datagram cut short", cut(testpkt.Tunnel(peerIP, localIP, Port, Port, inner), 4), func(s Stats) uint64 { return s.Truncated }},
		{"udp length beyond the ip length", set16(testpkt.Tunnel(peerIP, localIP, Port, Port, inner), 14+20+4, uint16(8+len(inner)+4)), func(s Stats) uint64 { return s.Truncated }},
		{"inner packet longer than the datagram", testpkt.Tunnel(peerIP, localIP, Port, Port, set16(inner, 2, uint16(len(inner)+10))), func(s Stats) uint64 { return s.Truncated }},
		{"inner header cut", testpkt.Tunnel(peerIP, localIP, Port, Port, inner[:12]), func(s Stats) uint64 { return s.Truncated }},
		{"oversized inner packet", testpkt.Tunnel(peerIP, localIP, Port, Port, big), func(s Stats) uint64 { return s.Oversized }},
		{"ipv6 payload", testpkt.Tunnel(peerIP, localIP, Port, Port, ipv6), func(s Stats) uint64 { return s.NotIPv4 }},
		{"garbage payload", testpkt.Tunnel(peerIP, localIP, Port, Port, make([]byte, 40)), func(s Stats) uint64 { return s.NotIPv4 }},
		{"unknown inner destination", testpkt.Tunnel(peerIP, localIP, Port, Port, packet(testpkt.IPv4(testpkt.Spec{Proto: "udp", Src: "10.30.0.100", Dst: "10.18.1.77", Sport: 1, Dport: 2}))), func(s Stats) uint64 { return s.NoTarget }},
		{"instance IP without a session", testpkt.Tunnel(peerIP, localIP, Port, Port, packet(testpkt.IPv4(testpkt.Spec{Proto: "udp", Src: "10.18.1.9", Dst: "10.30.0.100", Sport: 1, Dport: 2}))), func(s Stats) uint64 { return s.NoTarget }},
		{"outer fragment", frag, func(s Stats) uint64 { return s.Fragments }},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := newRig(t)
			res, _ := r.decap(t, c.frame)
			assert.EqualValues(t, tcShot, res, "dropped")
			st := r.stats(t)
			assert.EqualValues(t, 1, c.count(st), "counted once: %+v", st)
			assert.Zero(t, st.Delivered+st.Reversed, "never delivered")
		})
	}
}

func TestDecapPassesOtherTraffic(t *testing.T) {
	r := newRig(t)
	inner := forward()
	for _, c := range []struct {
		name  string
		frame []byte
	}{
		{"arp", testpkt.ARP()},
		{"ipv6", testpkt.IPv6UDP()},
		{"another udp port", testpkt.Tunnel(peerIP, localIP, Port, 4789, inner)},
		{"another destination", testpkt.Tunnel(peerIP, "10.17.0.3", Port, Port, inner)},
		{"tcp", testpkt.IPv4(testpkt.Spec{Proto: "tcp", Src: peerIP, Dst: localIP, Sport: 1, Dport: Port})},
	} {
		t.Run(c.name, func(t *testing.T) {
			res, _ := r.decap(t, c.frame)
			assert.EqualValues(t, tcxNext, res)
		})
	}
	assert.Equal(t, Stats{}, r.stats(t), "nothing counted")
}

// verify decodes an IPv4 packet and checks its IPv4 and L4 checksums.
func verify(t testing.TB, b []byte) *layers.IPv4 {
	t.Helper()
	pkt := gopacket.NewPacket(b, layers.LayerTypeIPv4, gopacket.Default)
	ip, ok := pkt.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
	require.True(t, ok, "an IPv4 packet")
	ihl := int(ip.IHL) * 4
	assert.Equal(t, uint16(0), inetcsum.Checksum(b[:ihl]), "the IPv4 header checksum verifies")
	seg := b[ihl:ip.Length]
	if ip.Protocol == layers.IPProtocolUDP && binary.BigEndian.Uint16(seg[6:]) == 0 {
		return ip
	}
	var pseudo [12]byte
	copy(pseudo[:4], ip.SrcIP.To4())
	copy(pseudo[4:8], ip.DstIP.To4())
	pseudo[9] = byte(ip.Protocol)
	binary.BigEndian.PutUint16(pseudo[10:], uint16(len(seg)))
	assert.Equal(t, uint16(0), inetcsum.Fold(inetcsum.Add(inetcsum.Add(0, pseudo[:]), seg)), "the %s checksum verifies", ip.Protocol)
	return ip
}

// packet returns the IPv4 packet of an Ethernet frame, without the frame's padding.
func packet(frame []byte) []byte {
	return frame[14 : 14+int(binary.BigEndian.Uint16(frame[14+2:]))]
}

// fixIPCheck recomputes the outer IPv4 header checksum of a frame.
func fixIPCheck(frame []byte) []byte {
	ihl := int(frame[14]&0xf) * 4
	frame[14+10], frame[14+11] = 0, 0
	binary.BigEndian.PutUint16(frame[14+10:], inetcsum.Checksum(frame[14:14+ihl]))
	return frame
}

// now is the kernel's coarse monotonic clock, which sessions are stamped with.
func now(t testing.TB) uint64 {
	var ts unix.Timespec
	require.NoError(t, unix.ClockGettime(unix.CLOCK_MONOTONIC_COARSE, &ts))
	return uint64(ts.Nano())
}

func htons(v uint16) uint16 {
	var b [2]byte
	binary.BigEndian.PutUint16(b[:], v)
	return binary.NativeEndian.Uint16(b[:])
}
