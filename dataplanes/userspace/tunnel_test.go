package userspace

import (
	"encoding/binary"
	"net"
	"net/netip"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/edgebpf/edgebpf/netsetup"
)

// A two-worker cluster as netsetup would address it: the client on worker 0, the two
// server instances on worker 1, every instance in both workers' registries.
const (
	w0IP       = "10.17.0.1"
	w1IP       = "10.17.0.2"
	strangerIP = "10.17.0.9"
	xClientNS  = "10.18.0.2"
	xClientIP  = "10.30.0.2"
	xSvc       = "10.30.0.3"
	xServer0NS = "10.18.1.2"
	xServer0IP = "10.30.0.4"
	xServer1NS = "10.18.1.3"
	xServer1IP = "10.30.0.5"
	// A second client, on worker 1 next to the servers.
	xLocalNS = "10.18.1.4"
	xLocalIP = "10.30.0.6"
)

// worker is one worker's proxy core over its registry copy.
type worker struct {
	*testCore
	ip [4]byte
}

// newCluster returns the cores of worker 0 and worker 1.
func newCluster(t testing.TB) (w0, w1 *worker) {
	ins := map[string][]*netsetup.Instance{
		"client": {instance("client", 0, xClientNS, xClientIP)},
		"server": {instance("server", 0, xServer0NS, xServer0IP), instance("server", 1, xServer1NS, xServer1IP)},
		"local":  {instance("local", 0, xLocalNS, xLocalIP)},
	}
	on := map[*netsetup.Instance]string{ins["client"][0]: w0IP, ins["server"][0]: w1IP, ins["server"][1]: w1IP, ins["local"][0]: w1IP}
	mk := func(self string) *worker {
		reg := &fakeRegistry{
			services: []netsetup.Service{
				{Name: "client", IP: netip.MustParseAddr("10.30.0.1"), Balancing: netsetup.RoundRobin},
				{Name: "server", IP: netip.MustParseAddr(xSvc), Balancing: netsetup.RoundRobin},
				{Name: "local", IP: netip.MustParseAddr("10.30.0.7"), Balancing: netsetup.RoundRobin},
			},
			instances: ins, remote: map[*netsetup.Instance]netip.Addr{},
		}
		for in, node := range on {
			if node != self {
				reg.remote[in] = netip.MustParseAddr(node)
			}
		}
		tc := &testCore{reg: reg, out: make([]byte, replySize)}
		tc.core = newCore(DefaultConfig, reg)
		tc.now = func() int64 { return int64(tc.clock) }
		peer := w1IP
		if self == w1IP {
			peer = w0IP
		}
		tc.setTunnel([]netip.Addr{netip.MustParseAddr(peer)}, 1450)
		return &worker{testCore: tc, ip: netip.MustParseAddr(self).As4()}
	}
	return mk(w0IP), mk(w1IP)
}

// send hands a copy of pkt, read from the worker's device, to its core and returns what it
// sends and to which worker (zero: written back to the device).
func (w *worker) send(pkt []byte) ([]byte, [4]byte) {
	out, via := w.handle(append([]byte(nil), pkt...), w.out)
	if out == nil {
		return nil, via
	}
	return append([]byte(nil), out...), via
}

// recv hands a copy of a datagram's payload from peer to the worker's core and returns what
// it writes into its device.
func (w *worker) recv(peer [4]byte, payload []byte) []byte {
	out := w.receive(peer, append([]byte(nil), payload...))
	if out == nil {
		return nil
	}
	return append([]byte(nil), out...)
}

// tunnelled sends pkt from w and checks that it leaves through the tunnel to the worker to.
func (w *worker) tunnelled(t *testing.T, pkt []byte, to *worker) []byte {
	t.Helper()
	out, via := w.send(pkt)
	require.NotNil(t, out, "sent")
	require.Equal(t, to.ip, via, "tunnelled to the other worker")
	return out
}

// TestTunnelTCP follows a TCP connection through a service IP from worker 0 to worker 1:
// the datagram's payload is the translated packet byte for byte, worker 1 writes it into
// its device unchanged, the server's replies go back unchanged and only worker 0, which
// holds the session, reverse-translates them.
func TestTunnelTCP(t *testing.T) {
	w0, w1 := newCluster(t)
	syn := build(t, spec{proto: "tcp", src: xClientNS, dst: xSvc, sport: 40000, dport: 7400, flags: "S", seq: 1, options: true})
	wire := w0.tunnelled(t, syn, w1)
	assert.Equal(t, build(t, spec{proto: "tcp", src: xClientIP, dst: xServer0NS, sport: 40000, dport: 7400, flags: "S", seq: 1, options: true}), wire,
		"the payload is the translated packet: source the client's instance IP, destination the instance's namespace IP")
	assert.Equal(t, wire, w1.recv(w0.ip, wire), "the server's worker writes it into its device unchanged")

	synack := build(t, spec{proto: "tcp", src: xServer0NS, dst: xClientIP, sport: 7400, dport: 40000, flags: "SA", ack: 2})
	back := w1.tunnelled(t, synack, w0)
	assert.Equal(t, synack, back, "the reply goes back unchanged")
	d := decode(t, w0.recv(w1.ip, back))
	src, dst := addrs(d)
	assert.Equal(t, xSvc, src, "the client sees the service IP")
	assert.Equal(t, xClientNS, dst)

	for range 3 {
		ack := build(t, spec{proto: "tcp", src: xClientNS, dst: xSvc, sport: 40000, dport: 7400, flags: "A", seq: 2, payload: make([]byte, 1410)})
		wire := w0.tunnelled(t, ack, w1)
		assert.Equal(t, wire, w1.recv(w0.ip, wire))
		reply := build(t, spec{proto: "tcp", src: xServer0NS, dst: xClientIP, sport: 7400, dport: 40000, flags: "A", ack: 1412})
		assert.Equal(t, xSvc, decode(t, w0.recv(w1.ip, w1.tunnelled(t, reply, w0))).ip.SrcIP.String())
	}
	assert.EqualValues(t, 1, w0.st.created.Load(), "one session, on the client's worker")
	assert.EqualValues(t, 4, w0.st.tunnel.reversed.Load())
	assert.EqualValues(t, 4, w1.st.tunnel.received.Load())
	assert.Zero(t, w1.st.tunnel.reversed.Load(), "the server's worker translates nothing")
	assert.Equal(t, 1, w1.sessionCount(), "one transit session on the server's worker")

	// A second connection goes to the next instance, on the same worker.
	syn2 := build(t, spec{proto: "tcp", src: xClientNS, dst: xSvc, sport: 40001, dport: 7400, flags: "S"})
	assert.Equal(t, xServer1NS, decode(t, w0.tunnelled(t, syn2, w1)).ip.DstIP.String())
}

// TestTunnelUDP sends datagrams both ways through a service IP, with and without a UDP
// checksum, and checks each step's bytes.
func TestTunnelUDP(t *testing.T) {
	for _, noCsum := range []bool{false, true} {
		w0, w1 := newCluster(t)
		req := build(t, spec{proto: "udp", src: xClientNS, dst: xSvc, sport: 5000, dport: 7401, noUDPCsum: noCsum})
		wire := w0.tunnelled(t, req, w1)
		assert.Equal(t, build(t, spec{proto: "udp", src: xClientIP, dst: xServer0NS, sport: 5000, dport: 7401, noUDPCsum: noCsum}), wire)
		assert.Equal(t, wire, w1.recv(w0.ip, wire))
		rep := build(t, spec{proto: "udp", src: xServer0NS, dst: xClientIP, sport: 7401, dport: 5000, noUDPCsum: noCsum})
		assert.Equal(t, rep, w1.tunnelled(t, rep, w0), "the reply of a transit session goes back unchanged")
		assert.Equal(t, build(t, spec{proto: "udp", src: xSvc, dst: xClientNS, sport: 7401, dport: 5000, noUDPCsum: noCsum}), w0.recv(w1.ip, rep))
	}
}

// TestTunnelInstanceIP has an instance on worker 1 open connections to the client's
// instance IP on worker 0: worker 1 holds the session and translates, worker 0 carries.
func TestTunnelInstanceIP(t *testing.T) {
	for _, proto := range []string{"udp", "tcp"} {
		w0, w1 := newCluster(t)
		flags := map[string]string{"udp": "", "tcp": "S"}[proto]
		out := build(t, spec{proto: proto, src: xLocalNS, dst: xClientIP, sport: 6000, dport: 80, flags: flags})
		wire := w1.tunnelled(t, out, w0)
		assert.Equal(t, build(t, spec{proto: proto, src: xLocalIP, dst: xClientNS, sport: 6000, dport: 80, flags: flags}), wire)
		assert.Equal(t, wire, w0.recv(w1.ip, wire))
		flags = map[string]string{"udp": "", "tcp": "SA"}[proto]
		rep := build(t, spec{proto: proto, src: xClientNS, dst: xLocalIP, sport: 80, dport: 6000, flags: flags})
		assert.Equal(t, rep, w0.tunnelled(t, rep, w1))
		assert.Equal(t, build(t, spec{proto: proto, src: xClientIP, dst: xLocalNS, sport: 80, dport: 6000, flags: flags}), w1.recv(w0.ip, rep))
	}
}

// TestTunnelReplyWithoutTransit checks that a local server's TCP segment to a remote
// client's instance IP without any session here (its transit session was evicted) goes back
// to the client's worker unchanged rather than being refused.
func TestTunnelReplyWithoutTransit(t *testing.T) {
	w0, w1 := newCluster(t)
	ack := build(t, spec{proto: "tcp", src: xServer0NS, dst: xClientIP, sport: 7400, dport: 40000, flags: "A"})
	assert.Equal(t, ack, w1.tunnelled(t, ack, w0))
	assert.Zero(t, w1.st.refused.Load())
}

// TestTunnelICMPError checks that the server's port unreachable about a tunnelled datagram
// goes back unchanged and reaches the client as the service IP's.
func TestTunnelICMPError(t *testing.T) {
	w0, w1 := newCluster(t)
	req := build(t, spec{proto: "udp", src: xClientNS, dst: xSvc, sport: 5000, dport: 7401})
	wire := w0.tunnelled(t, req, w1)
	require.NotNil(t, w1.recv(w0.ip, wire))
	unreach := icmpAbout(t, xServer0NS, xClientIP, wire)
	back := w1.tunnelled(t, unreach, w0)
	assert.Equal(t, unreach, back)
	d := decode(t, w0.recv(w1.ip, back))
	assert.Equal(t, xSvc, d.ip.SrcIP.String())
	assert.Equal(t, xClientNS, d.ip.DstIP.String())
	assert.Equal(t, req, d.icmp.Payload, "the quote is the datagram as the client sent it")
}

func icmpAbout(t testing.TB, src, dst string, quote []byte) []byte {
	ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolICMPv4, SrcIP: net.ParseIP(src).To4(), DstIP: net.ParseIP(dst).To4()}
	icmp := &layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(icmpUnreachable, codePortUnreach)}
	buf := gopacket.NewSerializeBuffer()
	require.NoError(t, gopacket.SerializeLayers(buf, gopacket.SerializeOptions{ComputeChecksums: true, FixLengths: true}, ip, icmp, gopacket.Payload(quote)))
	return buf.Bytes()
}

// TestTunnelBadInput hands worker 1 datagrams it must drop, each counted under its cause,
// none written into the device.
func TestTunnelBadInput(t *testing.T) {
	w0, w1 := newCluster(t)
	good := build(t, spec{proto: "udp", src: xClientIP, dst: xServer0NS, sport: 5000, dport: 7401})
	ipv6 := make([]byte, 60)
	ipv6[0] = 0x60
	frag := append([]byte(nil), good...)
	binary.BigEndian.PutUint16(frag[6:], 0x2000) // more fragments
	frag[10], frag[11] = 0, 0
	binary.BigEndian.PutUint16(frag[10:], checksum(frag[:20]))
	stranger := netip.MustParseAddr(strangerIP).As4()
	cases := []struct {
		name    string
		peer    [4]byte
		payload []byte
		counter func() uint64
	}{
		{"unknown peer", stranger, good, w1.st.tunnel.unknownPeer.Load},
		{"this worker itself", w1.ip, good, w1.st.tunnel.unknownPeer.Load},
		{"oversized", w0.ip, build(t, spec{proto: "udp", src: xClientIP, dst: xServer0NS, sport: 5000, dport: 7401, payload: make([]byte, 1451-28)}), w1.st.tunnel.oversized.Load},
		{"empty", w0.ip, nil, w1.st.tunnel.notIPv4.Load},
		{"ipv6", w0.ip, ipv6, w1.st.tunnel.notIPv4.Load},
		{"garbage", w0.ip, []byte("hello, tunnel"), w1.st.tunnel.notIPv4.Load},
		{"truncated", w0.ip, good[:len(good)-1], w1.st.tunnel.truncated.Load},
		{"trailing bytes", w0.ip, append(append([]byte(nil), good...), 0), w1.st.tunnel.truncated.Load},
		{"cut udp header", w0.ip, fixLen(good[:24]), w1.st.tunnel.truncated.Load},
		{"fragment", w0.ip, frag, w1.st.tunnel.fragment.Load},
		{"not ip in ip", w0.ip, build(t, spec{proto: "gre", src: xClientIP, dst: xServer0NS}), w1.st.tunnel.unsupported.Load},
		{"icmp timestamp", w0.ip, build(t, spec{proto: "icmp", icmpType: 13, src: xClientIP, dst: xServer0NS}), w1.st.tunnel.unsupported.Load},
		{"icmp error about nothing", w0.ip, icmpAbout(t, xClientIP, xServer0NS, build(t, spec{proto: "udp", src: xServer0NS, dst: xClientIP, sport: 1, dport: 2})), w1.st.tunnel.unsupported.Load},
		{"destination on the sender's worker", w0.ip, build(t, spec{proto: "udp", src: xClientIP, dst: xClientNS, sport: 1, dport: 2}), w1.st.tunnel.unknownDst.Load},
		{"destination a service IP", w0.ip, build(t, spec{proto: "udp", src: xClientIP, dst: xSvc, sport: 1, dport: 2}), w1.st.tunnel.unknownDst.Load},
		{"destination an instance IP", w0.ip, build(t, spec{proto: "udp", src: xClientIP, dst: xServer0IP, sport: 1, dport: 2}), w1.st.tunnel.unknownDst.Load},
		{"destination unknown", w0.ip, build(t, spec{proto: "udp", src: xClientIP, dst: "192.0.2.1", sport: 1, dport: 2}), w1.st.tunnel.unknownDst.Load},
		{"source a namespace IP", w0.ip, build(t, spec{proto: "udp", src: xClientNS, dst: xServer0NS, sport: 1, dport: 2}), w1.st.tunnel.unknownSrc.Load},
		{"source a local instance", w0.ip, build(t, spec{proto: "udp", src: xLocalIP, dst: xServer0NS, sport: 1, dport: 2}), w1.st.tunnel.unknownSrc.Load},
		{"source unknown", w0.ip, build(t, spec{proto: "udp", src: "192.0.2.1", dst: xServer0NS, sport: 1, dport: 2}), w1.st.tunnel.unknownSrc.Load},
	}
	for _, c := range cases {
		before := c.counter()
		assert.Nil(t, w1.recv(c.peer, c.payload), c.name)
		assert.Equal(t, before+1, c.counter(), "%s is counted under its cause", c.name)
	}
	assert.Zero(t, w1.st.tunnel.received.Load(), "nothing was written into the device")
	assert.Zero(t, w1.sessionCount(), "no datagram opened a session")

	// A session's own keys do not open the way: the client's forward key and a transit
	// session's reply key come from the device, never through the tunnel.
	syn := build(t, spec{proto: "udp", src: xLocalNS, dst: xClientIP, sport: 9, dport: 9})
	w1.tunnelled(t, syn, w0)
	assert.Nil(t, w1.recv(w0.ip, syn), "a local client's packet from the tunnel")
	req := build(t, spec{proto: "udp", src: xClientIP, dst: xServer0NS, sport: 5000, dport: 7401})
	require.NotNil(t, w1.recv(w0.ip, req))
	assert.Nil(t, w1.recv(w0.ip, build(t, spec{proto: "udp", src: xServer0NS, dst: xClientIP, sport: 7401, dport: 5000})), "a transit reply from the tunnel")
	assert.Nil(t, w0.recv(w1.ip, build(t, spec{proto: "udp", src: xServer0NS, dst: xClientIP, sport: 7401, dport: 1})), "a reply to no session")
}

// fixLen sets a cut packet's IPv4 total length and header checksum to its length.
func fixLen(p []byte) []byte {
	p = append([]byte(nil), p...)
	binary.BigEndian.PutUint16(p[2:], uint16(len(p)))
	p[10], p[11] = 0, 0
	binary.BigEndian.PutUint16(p[10:], checksum(p[:20]))
	return p
}

// TestTunnelTooBig checks the send side's bound: a packet for another worker larger than
// the overlay MTU is dropped and counted, not sent (the device's MTU keeps the kernel from
// handing the proxy one); the same packet to a local instance is written back.
func TestTunnelTooBig(t *testing.T) {
	w0, w1 := newCluster(t)
	big := build(t, spec{proto: "udp", src: xClientNS, dst: xSvc, sport: 5000, dport: 7401, payload: make([]byte, 1451-28)})
	out, _ := w0.send(big)
	assert.Nil(t, out)
	assert.EqualValues(t, 1, w0.st.tunnel.tooBig.Load())
	fits := build(t, spec{proto: "udp", src: xClientNS, dst: xSvc, sport: 5001, dport: 7401, payload: make([]byte, 1450-28)})
	assert.Len(t, w0.tunnelled(t, fits, w1), 1450)
	local := build(t, spec{proto: "udp", src: xLocalNS, dst: "10.30.0.7", sport: 5000, dport: 7401, payload: make([]byte, 1451-28)})
	out, via := w1.send(local)
	assert.NotNil(t, out, "a local packet is not the tunnel's to bound")
	assert.Zero(t, via)
}

// TestTunnelRemovedInstance checks that a transit session of a removed server drops its
// datagrams and refuses its replies' way back.
func TestTunnelRemovedInstance(t *testing.T) {
	w0, w1 := newCluster(t)
	wire := w0.tunnelled(t, build(t, spec{proto: "udp", src: xClientNS, dst: xSvc, sport: 5000, dport: 7401}), w1)
	require.NotNil(t, w1.recv(w0.ip, wire))
	w1.instanceRemoved(w1.reg.instances["server"][0])
	assert.Nil(t, w1.recv(w0.ip, wire))
	assert.EqualValues(t, 1, w1.st.tunnel.dead.Load())
}

// TestRemoteClientFromDevice checks that a packet read from the device whose source is a
// remote instance's namespace IP opens no session.
func TestRemoteClientFromDevice(t *testing.T) {
	_, w1 := newCluster(t)
	out, via := w1.send(build(t, spec{proto: "udp", src: xClientNS, dst: xSvc, sport: 1, dport: 2}))
	require.NotNil(t, out)
	assert.Zero(t, via)
	assert.Equal(t, byte(icmpUnreachable), decode(t, out).icmp.TypeCode.Type(), "refused")
	assert.EqualValues(t, 1, w1.st.unknownSrc.Load())
}

// TestTunnelNoAllocation checks that an established session's packets cross the tunnel's
// pure part without allocating, on both workers.
func TestTunnelNoAllocation(t *testing.T) {
	w0, w1 := newCluster(t)
	syn := build(t, spec{proto: "tcp", src: xClientNS, dst: xSvc, sport: 40000, dport: 7400, flags: "S"})
	require.NotNil(t, w1.recv(w0.ip, w0.tunnelled(t, syn, w1)))
	ack := build(t, spec{proto: "tcp", src: xClientNS, dst: xSvc, sport: 40000, dport: 7400, flags: "A", payload: make([]byte, 1400)})
	buf := make([]byte, len(ack))
	allocs := testing.AllocsPerRun(1000, func() {
		copy(buf, ack)
		p, _ := w0.handle(buf, w0.out)
		if p == nil || w1.receive(w0.ip, p) == nil {
			t.Fatal("dropped")
		}
	})
	assert.Zero(t, allocs)
}

// FuzzTunnelReceive hands worker 1 arbitrary datagrams from worker 0 and from a stranger:
// nothing panics, and what is written into the device is a whole IPv4 packet with a valid
// header checksum (when the datagram's was valid) to a local instance's namespace IP or
// the client's (a reply reverse-translated).
func FuzzTunnelReceive(f *testing.F) {
	f.Add(build(f, spec{proto: "udp", src: xClientIP, dst: xServer0NS, sport: 5000, dport: 7401}), false)
	f.Add(build(f, spec{proto: "tcp", src: xClientIP, dst: xServer1NS, sport: 1, dport: 2, flags: "S", options: true}), false)
	f.Add(build(f, spec{proto: "icmp", icmpType: icmpEchoRequest, src: xClientIP, dst: xServer0NS}), false)
	f.Add(build(f, spec{proto: "udp", src: xClientIP, dst: xServer0NS, sport: 5000, dport: 7401}), true)
	f.Add(icmpAbout(f, xClientIP, xServer0NS, build(f, spec{proto: "udp", src: xServer0NS, dst: xClientIP, sport: 7401, dport: 5000})), false)
	f.Add([]byte{0x45, 0, 0, 20}, false)
	f.Add([]byte{0x60}, false)
	w0, w1 := newCluster(f)
	stranger := netip.MustParseAddr(strangerIP).As4()
	local := map[string]bool{xServer0NS: true, xServer1NS: true, xLocalNS: true}
	f.Fuzz(func(t *testing.T, pkt []byte, fromStranger bool) {
		peer := w0.ip
		if fromStranger {
			peer = stranger
		}
		in := append([]byte(nil), pkt...)
		h, ok := parseIPv4(in)
		validHeader := ok && checksum(in[:h.ihl]) == 0
		out := w1.receive(peer, in)
		if out == nil {
			return
		}
		if fromStranger {
			t.Fatalf("accepted a datagram from a stranger: %x", pkt)
		}
		oh, ok := parseIPv4(out)
		if !ok || oh.total != len(out) || len(out) != len(pkt) || len(out) > 1450 {
			t.Fatalf("wrote %x for %x", out, pkt)
		}
		if validHeader && checksum(out[:oh.ihl]) != 0 {
			t.Fatalf("a valid IPv4 header checksum became invalid: %x -> %x", pkt, out)
		}
		if dst := netip.AddrFrom4(oh.dst).String(); !local[dst] {
			t.Fatalf("wrote a packet to %s, not a local instance: %x", dst, out)
		}
	})
}

// TestControlRemoteInstance checks that a remote instance's event carries its worker's node
// IP into the proxy process's registry copy, and that one without it is refused.
func TestControlRemoteInstance(t *testing.T) {
	m := newMirror()
	c := newCore(DefaultConfig, m)
	svc := netsetup.Service{Name: "server", IP: netip.MustParseAddr(xSvc), Balancing: netsetup.RoundRobin}
	remote := &wireEvent{Kind: netsetup.InstanceCreated, Service: svc, Instance: &wireInstance{
		Service: "server", Name: "server-0", NSIP: netip.MustParseAddr(xServer0NS), InstanceIP: netip.MustParseAddr(xServer0IP),
		Node: "c-w1", NodeIP: netip.MustParseAddr(w1IP), Remote: true,
	}}
	local := &wireEvent{Kind: netsetup.InstanceCreated, Service: svc, Instance: &wireInstance{
		Service: "server", Name: "server-1", NSIP: netip.MustParseAddr(xLocalNS), InstanceIP: netip.MustParseAddr(xLocalIP),
		Node: "c-w0", NodeIP: netip.MustParseAddr(w0IP),
	}}
	require.NoError(t, apply(c, m, remote))
	require.NoError(t, apply(c, m, local))
	in, ok := m.ByNamespaceIP(netip.MustParseAddr(xServer0NS))
	require.True(t, ok)
	node, ok := m.RemoteNode(in)
	assert.True(t, ok)
	assert.Equal(t, w1IP, node.String())
	in, ok = m.ByNamespaceIP(netip.MustParseAddr(xLocalNS))
	require.True(t, ok)
	_, ok = m.RemoteNode(in)
	assert.False(t, ok, "an instance on this worker is local")

	removed := *remote
	removed.Kind = netsetup.InstanceRemoved
	require.NoError(t, apply(c, m, &removed))
	assert.Empty(t, m.remote, "a removed instance's node is forgotten")

	bad := *remote.Instance
	bad.NodeIP = netip.Addr{}
	assert.ErrorContains(t, apply(c, m, &wireEvent{Kind: netsetup.InstanceCreated, Service: svc, Instance: &bad}), "without its worker's node IP")
}

// FuzzTunnelSend hands worker 1's core arbitrary packets from its device after a transit
// session exists: nothing panics, and what it tunnels goes to worker 0, is a whole IPv4
// packet within the overlay MTU, with a valid header checksum when the packet's was valid.
func FuzzTunnelSend(f *testing.F) {
	f.Add(build(f, spec{proto: "udp", src: xServer0NS, dst: xClientIP, sport: 7401, dport: 5000}))
	f.Add(build(f, spec{proto: "tcp", src: xServer0NS, dst: xClientIP, sport: 7401, dport: 5000, flags: "A"}))
	f.Add(build(f, spec{proto: "tcp", src: xLocalNS, dst: xClientIP, sport: 1, dport: 2, flags: "S"}))
	f.Add(build(f, spec{proto: "icmp", icmpType: icmpEchoReply, src: xServer0NS, dst: xClientIP}))
	f.Add(icmpAbout(f, xServer0NS, xClientIP, build(f, spec{proto: "udp", src: xClientIP, dst: xServer0NS, sport: 5000, dport: 7401})))
	w0, w1 := newCluster(f)
	if w1.receive(w0.ip, build(f, spec{proto: "udp", src: xClientIP, dst: xServer0NS, sport: 5000, dport: 7401})) == nil {
		f.Fatal("no transit session")
	}
	f.Fuzz(func(t *testing.T, pkt []byte) {
		in := append([]byte(nil), pkt...)
		h, ok := parseIPv4(in)
		validHeader := ok && checksum(in[:h.ihl]) == 0
		out, via := w1.handle(in, w1.out)
		if out == nil || via == ([4]byte{}) {
			return
		}
		if via != w0.ip {
			t.Fatalf("tunnelled to %v: %x", via, pkt)
		}
		oh, ok := parseIPv4(out)
		if !ok || oh.total != len(out) || len(out) > 1450 {
			t.Fatalf("tunnelled %x for %x", out, pkt)
		}
		if validHeader && checksum(out[:oh.ihl]) != 0 {
			t.Fatalf("a valid IPv4 header checksum became invalid: %x -> %x", pkt, out)
		}
	})
}
