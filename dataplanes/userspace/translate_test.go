package userspace

import (
	"encoding/binary"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/edgebpf/edgebpf/netsetup"
)

// The addresses of the fake node: a client and a two-instance server, as netsetup would
// hand them out.
const (
	clientNS   = "10.18.0.2"
	clientInst = "10.30.0.2"
	serverSvc  = "10.30.0.3"
	server0NS  = "10.18.0.3"
	server0IP  = "10.30.0.4"
	server1NS  = "10.18.0.4"
	server1IP  = "10.30.0.5"
	emptySvc   = "10.30.0.6"
)

// fakeRegistry is the table query over fixed services; remote holds the node IPs of
// instances on other workers.
type fakeRegistry struct {
	services  []netsetup.Service
	instances map[string][]*netsetup.Instance
	remote    map[*netsetup.Instance]netip.Addr
}

func (r *fakeRegistry) RemoteNode(in *netsetup.Instance) (netip.Addr, bool) {
	node, ok := r.remote[in]
	return node, ok
}

func (r *fakeRegistry) ByServiceIP(ip netip.Addr) (netsetup.Service, []*netsetup.Instance, bool) {
	for _, s := range r.services {
		if s.IP == ip {
			return s, r.instances[s.Name], true
		}
	}
	return netsetup.Service{}, nil, false
}

func (r *fakeRegistry) find(match func(*netsetup.Instance) bool) (*netsetup.Instance, bool) {
	for _, ins := range r.instances {
		for _, in := range ins {
			if match(in) {
				return in, true
			}
		}
	}
	return nil, false
}

func (r *fakeRegistry) ByInstanceIP(ip netip.Addr) (*netsetup.Instance, bool) {
	return r.find(func(in *netsetup.Instance) bool { return in.InstanceIP == ip })
}

func (r *fakeRegistry) ByNamespaceIP(ip netip.Addr) (*netsetup.Instance, bool) {
	return r.find(func(in *netsetup.Instance) bool { return in.NSIP == ip })
}

func instance(service string, i int, ns, ip string) *netsetup.Instance {
	return &netsetup.Instance{Service: service, Index: i, NSIP: netip.MustParseAddr(ns), InstanceIP: netip.MustParseAddr(ip)}
}

func newFakeRegistry() *fakeRegistry {
	return &fakeRegistry{
		services: []netsetup.Service{
			{Name: "client", IP: netip.MustParseAddr("10.30.0.1"), Balancing: netsetup.RoundRobin},
			{Name: "server", IP: netip.MustParseAddr(serverSvc), Balancing: netsetup.RoundRobin},
			{Name: "empty", IP: netip.MustParseAddr(emptySvc), Balancing: netsetup.RoundRobin},
		},
		instances: map[string][]*netsetup.Instance{
			"client": {instance("client", 0, clientNS, clientInst)},
			"server": {instance("server", 0, server0NS, server0IP), instance("server", 1, server1NS, server1IP)},
		},
	}
}

// testCore is a core over the fake registry with a clock the test moves.
type testCore struct {
	*core
	reg   *fakeRegistry
	clock time.Duration
	out   []byte
}

func newTestCore(t testing.TB) *testCore {
	tc := &testCore{reg: newFakeRegistry(), out: make([]byte, replySize)}
	cfg := DefaultConfig
	tc.core = newCore(cfg, tc.reg)
	tc.now = func() int64 { return int64(tc.clock) }
	return tc
}

// pass hands a copy of pkt to the proxy and returns what it writes back, or nil.
func (tc *testCore) pass(pkt []byte) []byte {
	in := append([]byte(nil), pkt...)
	out, via := tc.handle(in, tc.out)
	if out == nil {
		return nil
	}
	if via != ([4]byte{}) {
		panic("a single node's proxy tunnelled a packet")
	}
	return append([]byte(nil), out...)
}

// spec describes an IPv4 packet built with gopacket.
type spec struct {
	proto        string // tcp, udp, icmp
	src, dst     string
	sport, dport uint16
	flags        string // TCP: any of S, A, F, R
	seq, ack     uint32
	icmpType     uint8
	id           uint16 // ICMP echo id
	payload      []byte
	options      bool // 8 bytes of IPv4 options
	noUDPCsum    bool
}

func build(t testing.TB, s spec) []byte {
	t.Helper()
	ip := &layers.IPv4{Version: 4, TTL: 64, Id: 77, SrcIP: net.ParseIP(s.src).To4(), DstIP: net.ParseIP(s.dst).To4()}
	if s.options {
		ip.Options = []layers.IPv4Option{{OptionType: 1}, {OptionType: 1}, {OptionType: 1}, {OptionType: 1},
			{OptionType: 1}, {OptionType: 1}, {OptionType: 1}, {OptionType: 0}}
	}
	payload := s.payload
	if payload == nil {
		payload = []byte("edgebpf userspace proxy test payload")
	}
	ls := []gopacket.SerializableLayer{ip}
	switch s.proto {
	case "tcp":
		ip.Protocol = layers.IPProtocolTCP
		tcp := &layers.TCP{SrcPort: layers.TCPPort(s.sport), DstPort: layers.TCPPort(s.dport), Seq: s.seq, Ack: s.ack, Window: 1024}
		for _, f := range s.flags {
			switch f {
			case 'S':
				tcp.SYN = true
			case 'A':
				tcp.ACK = true
			case 'F':
				tcp.FIN = true
			case 'R':
				tcp.RST = true
			}
		}
		require.NoError(t, tcp.SetNetworkLayerForChecksum(ip))
		ls = append(ls, tcp)
	case "udp":
		ip.Protocol = layers.IPProtocolUDP
		udp := &layers.UDP{SrcPort: layers.UDPPort(s.sport), DstPort: layers.UDPPort(s.dport)}
		require.NoError(t, udp.SetNetworkLayerForChecksum(ip))
		ls = append(ls, udp)
	case "icmp":
		ip.Protocol = layers.IPProtocolICMPv4
		ls = append(ls, &layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(s.icmpType, 0), Id: s.id, Seq: 1})
	default:
		ip.Protocol = layers.IPProtocolGRE
	}
	ls = append(ls, gopacket.Payload(payload))
	buf := gopacket.NewSerializeBuffer()
	require.NoError(t, gopacket.SerializeLayers(buf, gopacket.SerializeOptions{ComputeChecksums: true, FixLengths: true}, ls...))
	pkt := buf.Bytes()
	if s.noUDPCsum {
		ihl := int(pkt[0]&0x0f) * 4
		pkt[ihl+6], pkt[ihl+7] = 0, 0
	}
	return pkt
}

// decoded is a packet as gopacket reads it, with its checksums checked independently:
// every layer is serialised again with checksums computed and must come out identical.
type decoded struct {
	ip   *layers.IPv4
	tcp  *layers.TCP
	udp  *layers.UDP
	icmp *layers.ICMPv4
	// udpSum is the UDP checksum as received (the layer's field is recomputed by decode).
	udpSum uint16
}

func decode(t testing.TB, pkt []byte) decoded {
	t.Helper()
	p := gopacket.NewPacket(pkt, layers.LayerTypeIPv4, gopacket.Default)
	require.Nil(t, p.ErrorLayer(), "decode %x", pkt)
	var d decoded
	var ok bool
	d.ip, ok = p.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
	require.True(t, ok)
	ls := []gopacket.SerializableLayer{d.ip}
	var payload []byte
	zeroUDP := false
	if l := p.Layer(layers.LayerTypeTCP); l != nil {
		d.tcp = l.(*layers.TCP)
		require.NoError(t, d.tcp.SetNetworkLayerForChecksum(d.ip))
		ls, payload = append(ls, d.tcp), d.tcp.Payload
	} else if l := p.Layer(layers.LayerTypeUDP); l != nil {
		d.udp = l.(*layers.UDP)
		d.udpSum = d.udp.Checksum
		zeroUDP = d.udp.Checksum == 0
		require.NoError(t, d.udp.SetNetworkLayerForChecksum(d.ip))
		ls, payload = append(ls, d.udp), d.udp.Payload
	} else if l := p.Layer(layers.LayerTypeICMPv4); l != nil {
		d.icmp = l.(*layers.ICMPv4)
		ls, payload = append(ls, d.icmp), d.icmp.Payload
	} else {
		payload = d.ip.Payload
	}
	ls = append(ls, gopacket.Payload(payload))
	buf := gopacket.NewSerializeBuffer()
	require.NoError(t, gopacket.SerializeLayers(buf, gopacket.SerializeOptions{ComputeChecksums: true, FixLengths: true}, ls...))
	want := buf.Bytes()
	if zeroUDP {
		ihl := int(want[0]&0x0f) * 4
		want[ihl+6], want[ihl+7] = 0, 0
	}
	require.Equal(t, want, pkt, "checksums and lengths as gopacket computes them")
	return d
}

func addrs(d decoded) (string, string) { return d.ip.SrcIP.String(), d.ip.DstIP.String() }

func TestTranslateTCP(t *testing.T) {
	for _, options := range []bool{false, true} {
		tc := newTestCore(t)
		syn := build(t, spec{proto: "tcp", src: clientNS, dst: serverSvc, sport: 40000, dport: 7400, flags: "S", seq: 1000, options: options})
		out := tc.pass(syn)
		require.NotNil(t, out)
		d := decode(t, out)
		src, dst := addrs(d)
		assert.Equal(t, clientInst, src, "the server sees the client's instance IP")
		assert.Equal(t, server0NS, dst, "the first session goes to the first instance")
		assert.Equal(t, 40000, int(d.tcp.SrcPort))
		assert.Equal(t, 7400, int(d.tcp.DstPort))
		assert.Equal(t, len(syn), len(out))
		if options {
			assert.Equal(t, 7, int(d.ip.IHL), "options are kept")
		}

		synack := build(t, spec{proto: "tcp", src: server0NS, dst: clientInst, sport: 7400, dport: 40000, flags: "SA", options: options})
		d = decode(t, tc.pass(synack))
		src, dst = addrs(d)
		assert.Equal(t, serverSvc, src, "the client sees the service IP")
		assert.Equal(t, clientNS, dst)
		assert.Equal(t, []byte("edgebpf userspace proxy test payload"), d.tcp.Payload)
	}
}

func TestTranslateUDP(t *testing.T) {
	for _, noCsum := range []bool{false, true} {
		for _, options := range []bool{false, true} {
			tc := newTestCore(t)
			req := build(t, spec{proto: "udp", src: clientNS, dst: serverSvc, sport: 5000, dport: 7401, noUDPCsum: noCsum, options: options})
			d := decode(t, tc.pass(req))
			src, dst := addrs(d)
			assert.Equal(t, clientInst, src)
			assert.Equal(t, server0NS, dst)
			if noCsum {
				assert.Zero(t, d.udpSum, "a UDP checksum of 0 stays 0")
			}
			rep := build(t, spec{proto: "udp", src: server0NS, dst: clientInst, sport: 7401, dport: 5000, noUDPCsum: noCsum, options: options})
			d = decode(t, tc.pass(rep))
			src, dst = addrs(d)
			assert.Equal(t, serverSvc, src)
			assert.Equal(t, clientNS, dst)
			if noCsum {
				assert.Zero(t, d.udpSum)
			}
		}
	}
}

// TestUDPChecksumNeverBecomesZero finds a payload whose translated checksum computes to 0
// and checks that it is sent as 0xffff, not as "no checksum".
func TestUDPChecksumNeverBecomesZero(t *testing.T) {
	found := 0
	for i := range 1 << 17 {
		payload := []byte{byte(i >> 16), byte(i >> 8), byte(i)}
		pkt := build(t, spec{proto: "udp", src: clientNS, dst: serverSvc, sport: 5000, dport: 7401, payload: payload})
		h, _ := parseIPv4(pkt)
		rewriteAddrs(pkt, &h, netip.MustParseAddr(clientInst).As4(), netip.MustParseAddr(server0NS).As4())
		c := binary.BigEndian.Uint16(h.l4[6:])
		require.NotZero(t, c)
		if c == 0xffff {
			found++
			decode(t, pkt)
		}
	}
	require.NotZero(t, found, "some payload hits the 0xffff case")
}

func TestRoundRobinAndStickiness(t *testing.T) {
	tc := newTestCore(t)
	var got []string
	for i := range 6 {
		port := uint16(40000 + i)
		d := decode(t, tc.pass(build(t, spec{proto: "tcp", src: clientNS, dst: serverSvc, sport: port, dport: 7400, flags: "S"})))
		got = append(got, d.ip.DstIP.String())
		for range 3 { // later segments of the session stay on its instance
			d2 := decode(t, tc.pass(build(t, spec{proto: "tcp", src: clientNS, dst: serverSvc, sport: port, dport: 7400, flags: "A"})))
			assert.Equal(t, d.ip.DstIP, d2.ip.DstIP)
		}
	}
	assert.Equal(t, []string{server0NS, server1NS, server0NS, server1NS, server0NS, server1NS}, got, "really round-robin")
}

func TestInstanceIP(t *testing.T) {
	tc := newTestCore(t)
	for range 3 {
		d := decode(t, tc.pass(build(t, spec{proto: "udp", src: clientNS, dst: server1IP, sport: 6000, dport: 7401})))
		assert.Equal(t, server1NS, d.ip.DstIP.String())
		assert.Equal(t, clientInst, d.ip.SrcIP.String())
	}
	d := decode(t, tc.pass(build(t, spec{proto: "udp", src: server1NS, dst: clientInst, sport: 7401, dport: 6000})))
	assert.Equal(t, server1IP, d.ip.SrcIP.String(), "the reply comes from the instance IP addressed")
	assert.Equal(t, clientNS, d.ip.DstIP.String())
}

func TestICMPEcho(t *testing.T) {
	tc := newTestCore(t)
	d := decode(t, tc.pass(build(t, spec{proto: "icmp", icmpType: icmpEchoRequest, id: 99, src: clientNS, dst: serverSvc})))
	assert.Equal(t, server0NS, d.ip.DstIP.String())
	d = decode(t, tc.pass(build(t, spec{proto: "icmp", icmpType: icmpEchoReply, id: 99, src: server0NS, dst: clientInst})))
	assert.Equal(t, serverSvc, d.ip.SrcIP.String())
	assert.Equal(t, clientNS, d.ip.DstIP.String())
	assert.Nil(t, tc.pass(build(t, spec{proto: "icmp", icmpType: icmpEchoReply, id: 5, src: clientNS, dst: serverSvc})),
		"an echo reply without a session is dropped")
}

func TestNoInstancesIsRefused(t *testing.T) {
	tc := newTestCore(t)
	syn := build(t, spec{proto: "tcp", src: clientNS, dst: emptySvc, sport: 40000, dport: 7400, flags: "S", seq: 1000, payload: []byte{}})
	d := decode(t, tc.pass(syn))
	require.NotNil(t, d.tcp)
	assert.Equal(t, emptySvc, d.ip.SrcIP.String(), "the reset comes from the address the client addressed")
	assert.Equal(t, clientNS, d.ip.DstIP.String())
	assert.True(t, d.tcp.RST && d.tcp.ACK)
	assert.Equal(t, uint32(1001), d.tcp.Ack, "RFC 793: ack = seq + 1 for a SYN")
	assert.Equal(t, 7400, int(d.tcp.SrcPort))
	assert.Equal(t, 40000, int(d.tcp.DstPort))

	ack := build(t, spec{proto: "tcp", src: clientNS, dst: emptySvc, sport: 40000, dport: 7400, flags: "A", seq: 5, ack: 777})
	d = decode(t, tc.pass(ack))
	assert.True(t, d.tcp.RST && !d.tcp.ACK)
	assert.Equal(t, uint32(777), d.tcp.Seq, "RFC 793: seq = the segment's ack")

	assert.Nil(t, tc.pass(build(t, spec{proto: "tcp", src: clientNS, dst: emptySvc, sport: 1, dport: 2, flags: "R"})), "no reset for a reset")

	udp := build(t, spec{proto: "udp", src: clientNS, dst: emptySvc, sport: 5000, dport: 7401, options: true})
	d = decode(t, tc.pass(udp))
	require.NotNil(t, d.icmp)
	assert.Equal(t, layers.CreateICMPv4TypeCode(icmpUnreachable, codePortUnreach), d.icmp.TypeCode)
	assert.Equal(t, emptySvc, d.ip.SrcIP.String())
	assert.Equal(t, clientNS, d.ip.DstIP.String())
	assert.Equal(t, udp, d.icmp.Payload, "the whole offending datagram is quoted")

	other := build(t, spec{proto: "gre", src: clientNS, dst: serverSvc})
	d = decode(t, tc.pass(other))
	assert.Equal(t, layers.CreateICMPv4TypeCode(icmpUnreachable, codeProtoUnreach), d.icmp.TypeCode)

	d = decode(t, tc.pass(build(t, spec{proto: "icmp", icmpType: icmpEchoRequest, id: 1, src: clientNS, dst: emptySvc})))
	assert.Equal(t, layers.CreateICMPv4TypeCode(icmpUnreachable, codeHostUnreach), d.icmp.TypeCode)
	assert.EqualValues(t, 3, tc.st.noInstance.Load(), "SYN, datagram, echo")
}

func TestRefusals(t *testing.T) {
	tc := newTestCore(t)
	d := decode(t, tc.pass(build(t, spec{proto: "udp", src: "10.18.0.99", dst: serverSvc, sport: 1, dport: 2})))
	assert.Equal(t, layers.CreateICMPv4TypeCode(icmpUnreachable, codePortUnreach), d.icmp.TypeCode, "sender is no instance")
	d = decode(t, tc.pass(build(t, spec{proto: "udp", src: clientNS, dst: "10.30.9.9", sport: 1, dport: 2})))
	assert.Equal(t, layers.CreateICMPv4TypeCode(icmpUnreachable, codePortUnreach), d.icmp.TypeCode, "nothing has the address")
	d = decode(t, tc.pass(build(t, spec{proto: "tcp", src: clientNS, dst: serverSvc, sport: 1, dport: 2, flags: "A", ack: 9})))
	assert.True(t, d.tcp.RST, "a TCP segment other than SYN without a session")
	assert.EqualValues(t, 1, tc.st.unknownSrc.Load())
	assert.EqualValues(t, 1, tc.st.unknownDst.Load())
	assert.EqualValues(t, 1, tc.st.unknownTCP.Load())
	assert.Zero(t, tc.st.created.Load())
}

func TestRemovedInstance(t *testing.T) {
	tc := newTestCore(t)
	udp := build(t, spec{proto: "udp", src: clientNS, dst: serverSvc, sport: 5000, dport: 7401})
	d := decode(t, tc.pass(udp))
	require.Equal(t, server0NS, d.ip.DstIP.String())
	syn := build(t, spec{proto: "tcp", src: clientNS, dst: serverSvc, sport: 40000, dport: 7400, flags: "S"})
	require.Equal(t, server1NS, decode(t, tc.pass(syn)).ip.DstIP.String())
	tcp0 := build(t, spec{proto: "tcp", src: clientNS, dst: server0IP, sport: 40001, dport: 7400, flags: "S"})
	require.Equal(t, server0NS, decode(t, tc.pass(tcp0)).ip.DstIP.String())

	gone := tc.reg.instances["server"][0]
	tc.reg.instances["server"] = tc.reg.instances["server"][1:]
	tc.instanceRemoved(gone)

	d = decode(t, tc.pass(udp))
	require.NotNil(t, d.icmp, "the old session is refused, not re-balanced")
	assert.Equal(t, layers.CreateICMPv4TypeCode(icmpUnreachable, codePortUnreach), d.icmp.TypeCode)
	d = decode(t, tc.pass(build(t, spec{proto: "tcp", src: clientNS, dst: server0IP, sport: 40001, dport: 7400, flags: "A", ack: 3})))
	assert.True(t, d.tcp.RST, "an established connection to the removed instance is reset")
	d = decode(t, tc.pass(build(t, spec{proto: "tcp", src: clientNS, dst: serverSvc, sport: 40000, dport: 7400, flags: "A"})))
	assert.Equal(t, server1NS, d.ip.DstIP.String(), "sessions to other instances go on")

	// a new session, even on the old tuple, goes to the remaining instance
	d = decode(t, tc.pass(build(t, spec{proto: "tcp", src: clientNS, dst: serverSvc, sport: 40002, dport: 7400, flags: "S"})))
	assert.Equal(t, server1NS, d.ip.DstIP.String())
	d = decode(t, tc.pass(build(t, spec{proto: "tcp", src: clientNS, dst: server1IP, sport: 40001, dport: 7400, flags: "S"})))
	assert.Equal(t, server1NS, d.ip.DstIP.String())

	// a new instance that gets the removed one's addresses starts clean
	tc.reg.instances["server"] = append(tc.reg.instances["server"], gone)
	tc.instanceAdded(gone)
	d = decode(t, tc.pass(udp))
	assert.Equal(t, server0NS, d.ip.DstIP.String())
}

func TestSessionExpiry(t *testing.T) {
	tc := newTestCore(t)
	udp := build(t, spec{proto: "udp", src: clientNS, dst: serverSvc, sport: 5000, dport: 7401})
	require.Equal(t, server0NS, decode(t, tc.pass(udp)).ip.DstIP.String())
	tc.clock += tc.cfg.UDPIdle - time.Second
	require.Equal(t, server0NS, decode(t, tc.pass(udp)).ip.DstIP.String(), "traffic keeps a session alive")
	tc.clock += tc.cfg.UDPIdle - time.Second
	require.Equal(t, server0NS, decode(t, tc.pass(udp)).ip.DstIP.String())
	tc.clock += tc.cfg.UDPIdle
	assert.Equal(t, server1NS, decode(t, tc.pass(udp)).ip.DstIP.String(), "an idle session expires; the next packet is balanced afresh")
	assert.EqualValues(t, 1, tc.st.expired.Load())

	// TCP: FIN both ways, then the closing timeout
	tcp := func(src, dst string, sport, dport uint16, flags string) []byte {
		return tc.pass(build(t, spec{proto: "tcp", src: src, dst: dst, sport: sport, dport: dport, flags: flags}))
	}
	ns := decode(t, tcp(clientNS, serverSvc, 40000, 7400, "S")).ip.DstIP.String()
	require.NotNil(t, tcp(ns, clientInst, 7400, 40000, "SA"))
	require.NotNil(t, tcp(clientNS, serverSvc, 40000, 7400, "FA"))
	tc.clock += tc.cfg.TCPClosing + time.Second
	d := decode(t, tcp(clientNS, serverSvc, 40000, 7400, "A"))
	require.Equal(t, ns, d.ip.DstIP.String(), "FIN one way only: still open")
	require.NotNil(t, tcp(ns, clientInst, 7400, 40000, "FA"))
	require.NotNil(t, tcp(clientNS, serverSvc, 40000, 7400, "A"), "the last ACK finds the session")
	tc.clock += tc.cfg.TCPClosing
	d = decode(t, tcp(clientNS, serverSvc, 40000, 7400, "A"))
	assert.True(t, d.tcp.RST, "after the closing timeout the session is gone")

	// the reaper removes what expired
	require.NotNil(t, tcp(clientNS, serverSvc, 40005, 7400, "S"))
	require.Equal(t, 2, tc.sessionCount())
	tc.clock += tc.cfg.TCPIdle
	tc.reap()
	assert.Equal(t, 0, tc.sessionCount())
	assert.Empty(t, tc.index)

	// a SYN reusing the tuple of a closed connection opens a new session
	require.NotNil(t, tcp(clientNS, serverSvc, 40006, 7400, "S"))
	first := decode(t, tcp(clientNS, serverSvc, 40006, 7400, "S")).ip.DstIP.String()
	require.NotNil(t, tcp(clientNS, serverSvc, 40006, 7400, "R"))
	second := decode(t, tcp(clientNS, serverSvc, 40006, 7400, "S")).ip.DstIP.String()
	assert.NotEqual(t, first, second, "balanced afresh after the reset")
}

func TestReplyKeyReplaced(t *testing.T) {
	tc := newTestCore(t)
	// port 5000 to the service IP (balanced to server-0) and to server-0's instance IP share
	// the reply key: the newer wins.
	require.NotNil(t, tc.pass(build(t, spec{proto: "udp", src: clientNS, dst: serverSvc, sport: 5000, dport: 7401})))
	require.NotNil(t, tc.pass(build(t, spec{proto: "udp", src: clientNS, dst: server0IP, sport: 5000, dport: 7401})))
	d := decode(t, tc.pass(build(t, spec{proto: "udp", src: server0NS, dst: clientInst, sport: 7401, dport: 5000})))
	assert.Equal(t, server0IP, d.ip.SrcIP.String())
	assert.EqualValues(t, 1, tc.st.replaced.Load())
	assert.Equal(t, 1, tc.sessionCount())
}

// TestFragments checks that every fragment of a datagram, first and later ones, is dropped
// and counted, with or without a session for its flow, and opens no session.
func TestFragments(t *testing.T) {
	tc := newTestCore(t)
	payload := make([]byte, 64)
	for i := range payload {
		payload[i] = byte(i * 7)
	}
	whole := build(t, spec{proto: "udp", src: clientNS, dst: serverSvc, sport: 5000, dport: 7401, payload: payload})
	data := whole[20:] // the UDP header and payload, cut at 8-byte boundaries below
	frag := func(from, to int, mf bool) []byte {
		ip := &layers.IPv4{Version: 4, TTL: 64, Id: 77, Protocol: layers.IPProtocolUDP, FragOffset: uint16(from / 8),
			SrcIP: net.ParseIP(clientNS).To4(), DstIP: net.ParseIP(serverSvc).To4()}
		if mf {
			ip.Flags = layers.IPv4MoreFragments
		}
		buf := gopacket.NewSerializeBuffer()
		require.NoError(t, gopacket.SerializeLayers(buf, gopacket.SerializeOptions{ComputeChecksums: true, FixLengths: true},
			ip, gopacket.Payload(data[from:to])))
		return buf.Bytes()
	}
	frags := [][]byte{frag(0, 32, true), frag(32, 56, true), frag(56, len(data), false)}
	for i, f := range frags {
		assert.Nil(t, tc.pass(f), "fragment %d of a datagram without a session", i)
	}
	assert.Zero(t, tc.st.created.Load(), "a first fragment opens no session")
	require.NotNil(t, tc.pass(whole), "the same datagram unfragmented opens the session")
	for i, f := range frags {
		assert.Nil(t, tc.pass(f), "fragment %d of a datagram with a session", i)
	}
	assert.EqualValues(t, 6, tc.st.fragments.Load())
	assert.EqualValues(t, 1, tc.st.forwarded.Load())
	assert.Zero(t, tc.st.refused.Load(), "dropped, not refused")
}

// TestICMPError checks that a server's port unreachable about a translated datagram reaches
// the client as the service IP's.
func TestICMPError(t *testing.T) {
	tc := newTestCore(t)
	req := build(t, spec{proto: "udp", src: clientNS, dst: serverSvc, sport: 5000, dport: 7401})
	translated := tc.pass(req)
	require.NotNil(t, translated)

	ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolICMPv4,
		SrcIP: net.ParseIP(server0NS).To4(), DstIP: net.ParseIP(clientInst).To4()}
	icmp := &layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(icmpUnreachable, codePortUnreach)}
	buf := gopacket.NewSerializeBuffer()
	require.NoError(t, gopacket.SerializeLayers(buf, gopacket.SerializeOptions{ComputeChecksums: true, FixLengths: true},
		ip, icmp, gopacket.Payload(translated)))
	d := decode(t, tc.pass(buf.Bytes()))
	assert.Equal(t, serverSvc, d.ip.SrcIP.String())
	assert.Equal(t, clientNS, d.ip.DstIP.String())
	assert.Equal(t, req, d.icmp.Payload, "the quote is the datagram as the client sent it, checksums included")

	// an error about an unknown packet is dropped
	stray := build(t, spec{proto: "udp", src: clientInst, dst: server0NS, sport: 1, dport: 2})
	buf = gopacket.NewSerializeBuffer()
	require.NoError(t, gopacket.SerializeLayers(buf, gopacket.SerializeOptions{ComputeChecksums: true, FixLengths: true},
		ip, icmp, gopacket.Payload(stray)))
	assert.Nil(t, tc.pass(buf.Bytes()))
}

// TestTruncated hands the proxy every prefix of valid packets, with and without their
// lengths fixed, and random garbage: nothing panics and nothing malformed is forwarded.
func TestTruncated(t *testing.T) {
	tc := newTestCore(t)
	pkts := [][]byte{
		build(t, spec{proto: "tcp", src: clientNS, dst: serverSvc, sport: 1, dport: 2, flags: "S", options: true}),
		build(t, spec{proto: "udp", src: clientNS, dst: serverSvc, sport: 1, dport: 2}),
		build(t, spec{proto: "icmp", icmpType: icmpEchoRequest, src: clientNS, dst: serverSvc}),
		build(t, spec{proto: "udp", src: clientNS, dst: emptySvc, sport: 1, dport: 2}),
	}
	for _, p := range pkts {
		for n := range len(p) {
			cut := append([]byte(nil), p[:n]...)
			assert.Nil(t, tc.pass(cut), "a packet cut to %d of %d bytes (length field intact) is dropped", n, len(p))
			if n >= 4 {
				binary.BigEndian.PutUint16(cut[2:], uint16(n))
				tc.pass(cut) // consistent lengths but a cut transport header: must not panic
			}
		}
	}
}

// TestNoAllocation checks that an established session's packets are translated without
// allocating.
func TestNoAllocation(t *testing.T) {
	tc := newTestCore(t)
	pkt := build(t, spec{proto: "tcp", src: clientNS, dst: serverSvc, sport: 40000, dport: 7400, flags: "S"})
	require.NotNil(t, tc.pass(pkt))
	ack := build(t, spec{proto: "tcp", src: clientNS, dst: serverSvc, sport: 40000, dport: 7400, flags: "A", payload: make([]byte, 1400)})
	buf := make([]byte, len(ack))
	allocs := testing.AllocsPerRun(1000, func() {
		copy(buf, ack)
		if p, _ := tc.handle(buf, tc.out); p == nil {
			t.Fatal("dropped")
		}
	})
	assert.Zero(t, allocs)
}

func BenchmarkHandle(b *testing.B) {
	tc := newTestCore(b)
	syn := build(b, spec{proto: "tcp", src: clientNS, dst: serverSvc, sport: 40000, dport: 7400, flags: "S"})
	tc.handle(append([]byte(nil), syn...), tc.out)
	ack := build(b, spec{proto: "tcp", src: clientNS, dst: serverSvc, sport: 40000, dport: 7400, flags: "A", payload: make([]byte, 1400)})
	buf := make([]byte, len(ack))
	b.SetBytes(int64(len(ack)))
	for b.Loop() {
		copy(buf, ack)
		tc.handle(buf, tc.out)
	}
}

func FuzzHandle(f *testing.F) {
	f.Add(build(f, spec{proto: "tcp", src: clientNS, dst: serverSvc, sport: 1, dport: 2, flags: "S", options: true}))
	f.Add(build(f, spec{proto: "udp", src: clientNS, dst: serverSvc, sport: 1, dport: 2, noUDPCsum: true}))
	f.Add(build(f, spec{proto: "udp", src: server0NS, dst: clientInst, sport: 2, dport: 1}))
	f.Add(build(f, spec{proto: "icmp", icmpType: icmpEchoRequest, src: clientNS, dst: serverSvc}))
	f.Add(build(f, spec{proto: "udp", src: clientNS, dst: emptySvc, sport: 1, dport: 2}))
	f.Add(build(f, spec{proto: "gre", src: clientNS, dst: server1IP}))
	f.Add([]byte{0x45, 0, 0, 20})
	tc := newTestCore(f)
	f.Fuzz(func(t *testing.T, pkt []byte) {
		in := append([]byte(nil), pkt...)
		h, ok := parseIPv4(in)
		validHeader := ok && checksum(in[:h.ihl]) == 0
		out, _ := tc.handle(in, tc.out)
		if out == nil {
			return
		}
		oh, ok := parseIPv4(out)
		if !ok {
			t.Fatalf("wrote a packet that does not parse: %x", out)
		}
		if &out[0] == &in[0] {
			if len(out) != h.total {
				t.Fatalf("forwarded %d bytes of a %d-byte packet", len(out), h.total)
			}
			if validHeader && checksum(out[:oh.ihl]) != 0 {
				t.Fatalf("a valid IPv4 header checksum became invalid: %x -> %x", pkt, out)
			}
		} else if checksum(out[:oh.ihl]) != 0 || len(out) > replySize {
			t.Fatalf("a refusal with a bad header or too long: %x", out)
		}
	})
}

func TestUnknownPolicy(t *testing.T) {
	m := newMirror()
	c := newCore(DefaultConfig, m)
	err := apply(c, m, toWire(netsetup.Event{Kind: netsetup.ServiceCreated, Service: netsetup.Service{Name: "web", Balancing: "random"}}))
	require.Error(t, err)
	assert.Contains(t, err.Error(), `balancing "random"`)
	assert.NotContains(t, m.services, "web", "a refused service is not kept")
	assert.NoError(t, apply(c, m, toWire(netsetup.Event{Kind: netsetup.ServiceCreated, Service: netsetup.Service{Name: "web", Balancing: netsetup.RoundRobin}})))
}
