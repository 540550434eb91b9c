package proxy

import (
	"encoding/binary"
	"encoding/json"
	"net/netip"
	"testing"
	"time"
	"unsafe"

	"github.com/cilium/ebpf"
	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/edgebpf/edgebpf/internal/inetcsum"
	"github.com/edgebpf/edgebpf/internal/testenv"
	"github.com/edgebpf/edgebpf/internal/testpkt"
	"github.com/edgebpf/edgebpf/netsetup"
)

func TestMain(m *testing.M) { testenv.Main(m) }

const tcRedirect = 7 // TC_ACT_REDIRECT: bpf_redirect_peer's verdict

// rig is a loaded proxy with one client and a service of two backends installed by hand.
type rig struct {
	p              *Proxy
	client         *netsetup.Instance
	svc            netip.Addr
	backends       []*netsetup.Instance
	clientInstance netip.Addr
}

func newRig(t *testing.T) *rig { return newRigWith(t, nil) }

// newRigWith is newRig with the proxy configured by config (JSON).
func newRigWith(t *testing.T, config json.RawMessage) *rig {
	node := testenv.Node(t)
	p, err := New(node, config)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, p.Close()) })
	r := &rig{p: p, svc: netip.MustParseAddr("10.30.9.1"), clientInstance: netip.MustParseAddr("10.30.9.100")}
	r.client = &netsetup.Instance{Name: "client-0", NSIP: netip.MustParseAddr("10.18.0.50"), InstanceIP: r.clientInstance,
		VethIndex: 1, MAC: []byte{2, 0, 0, 0, 0, 0x50}}
	require.NoError(t, p.putClient(r.client))
	for i := range 2 {
		r.backends = append(r.backends, &netsetup.Instance{Name: "server-" + string(rune('0'+i)),
			NSIP: netip.AddrFrom4([4]byte{10, 18, 0, byte(60 + i)}), VethIndex: 1, MAC: []byte{2, 0, 0, 0, 0, byte(0x60 + i)}})
	}
	require.NoError(t, p.Install(r.svc, "server", r.backends))
	return r
}

func (r *rig) run(t *testing.T, frame []byte) (uint32, []byte) {
	t.Helper()
	out := make([]byte, len(frame)+64)
	ret, err := r.p.objs.ProxyIn.Run(&ebpf.RunOptions{Data: frame, DataOut: out})
	require.NoError(t, err)
	return ret, out[:len(frame)]
}

// decode parses a frame and checks that its IPv4 and L4 checksums verify.
func decode(t *testing.T, frame []byte) (*layers.IPv4, gopacket.Packet) {
	t.Helper()
	pkt := gopacket.NewPacket(frame, layers.LayerTypeEthernet, gopacket.Default)
	ip, ok := pkt.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
	require.True(t, ok, "an IPv4 packet comes out")
	ihl := int(ip.IHL) * 4
	hdr := frame[14 : 14+ihl]
	assert.Equal(t, uint16(0xffff), sum(hdr), "the IPv4 header checksum verifies")
	seg := frame[14+ihl : 14+int(ip.Length)]
	var pseudo [12]byte
	copy(pseudo[:4], ip.SrcIP.To4())
	copy(pseudo[4:8], ip.DstIP.To4())
	pseudo[9] = byte(ip.Protocol)
	binary.BigEndian.PutUint16(pseudo[10:], uint16(len(seg)))
	if ip.Protocol == layers.IPProtocolUDP && binary.BigEndian.Uint16(seg[6:]) == 0 {
		return ip, pkt // no checksum
	}
	assert.Equal(t, uint16(0xffff), checksum2(pseudo[:], seg), "the %s checksum verifies", ip.Protocol)
	return ip, pkt
}

func sum(b []byte) uint16 { return checksum2(nil, b) }

func TestForwardAndReplyTranslation(t *testing.T) {
	for _, c := range []struct {
		name string
		spec testpkt.Spec
	}{
		{"tcp", testpkt.Spec{Proto: "tcp", SYN: true}},
		{"udp", testpkt.Spec{Proto: "udp"}},
		{"tcp with ipv4 options", testpkt.Spec{Proto: "tcp", SYN: true, IPOptions: true}},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := newRig(t)
			spec := c.spec
			spec.Src, spec.Dst, spec.Sport, spec.Dport = "10.18.0.50", "10.30.9.1", 40000, 80
			ret, out := r.run(t, testpkt.IPv4(spec))
			assert.EqualValues(t, tcRedirect, ret)
			ip, _ := decode(t, out)
			assert.Equal(t, r.clientInstance.String(), ip.SrcIP.String(), "source becomes the client's instance IP")
			backend := ip.DstIP.String()
			assert.Contains(t, []string{"10.18.0.60", "10.18.0.61"}, backend, "destination becomes a backend's namespace IP")
			assert.Equal(t, []byte{2, 0, 0, 0, 0, out[5]}, out[0:6], "to the backend's MAC")

			// The reply, from the backend to the client's instance IP, is translated back.
			reply := c.spec
			reply.Src, reply.Dst, reply.Sport, reply.Dport = backend, r.clientInstance.String(), 80, 40000
			reply.SYN = false
			ret, out = r.run(t, testpkt.IPv4(reply))
			assert.EqualValues(t, tcRedirect, ret)
			ip, _ = decode(t, out)
			assert.Equal(t, "10.30.9.1", ip.SrcIP.String(), "the client sees the service IP")
			assert.Equal(t, "10.18.0.50", ip.DstIP.String())
			assert.Equal(t, []byte{2, 0, 0, 0, 0, 0x50}, out[0:6])
		})
	}
}

func TestUDPChecksumZeroStaysZero(t *testing.T) {
	r := newRig(t)
	frame := testpkt.IPv4(testpkt.Spec{Proto: "udp", Src: "10.18.0.50", Dst: "10.30.9.1", Sport: 1, Dport: 53})
	frame[14+20+6], frame[14+20+7] = 0, 0 // no UDP checksum
	ret, out := r.run(t, frame)
	assert.EqualValues(t, tcRedirect, ret)
	decode(t, out)
	assert.Equal(t, []byte{0, 0}, out[14+20+6:14+20+8], "a zero UDP checksum is preserved")
}

func TestRoundRobinAndStickiness(t *testing.T) {
	r := newRig(t)
	seen := map[string]int{}
	for port := range 10 {
		_, out := r.run(t, testpkt.IPv4(testpkt.Spec{Proto: "udp", Src: "10.18.0.50", Dst: "10.30.9.1", Sport: uint16(1000 + port), Dport: 53}))
		ip, _ := decode(t, out)
		seen[ip.DstIP.String()]++
		// The same session again goes to the same backend.
		_, again := r.run(t, testpkt.IPv4(testpkt.Spec{Proto: "udp", Src: "10.18.0.50", Dst: "10.30.9.1", Sport: uint16(1000 + port), Dport: 53}))
		ip2, _ := decode(t, again)
		assert.Equal(t, ip.DstIP, ip2.DstIP)
	}
	assert.Equal(t, map[string]int{"10.18.0.60": 5, "10.18.0.61": 5}, seen, "really round-robin")
}

func TestMissesGoUpWithThePacket(t *testing.T) {
	r := newRig(t)
	frame := testpkt.IPv4(testpkt.Spec{Proto: "tcp", Src: "10.18.0.50", Dst: "10.30.7.7", Sport: 40000, Dport: 80, SYN: true})
	ret, _ := r.run(t, frame)
	assert.EqualValues(t, 2, ret, "the kernel consumes a miss (TC_ACT_SHOT) and hands it up")
	st, err := r.p.Stats()
	require.NoError(t, err)
	assert.EqualValues(t, 1, st.Upcalls)
	assert.Zero(t, st.Translated)
	// The control plane received the packet itself: it parsed its addresses and found the
	// test run's interface attached to no instance.
	require.Eventually(t, func() bool {
		st, _ := r.p.Stats()
		return st.ControlPlane.Upcalls == 1 && st.ControlPlane.Errors == 1
	}, 2*time.Second, 10*time.Millisecond)
	st, _ = r.p.Stats()
	assert.Contains(t, st.ControlPlane.LastError, "upcall from interface 1")

	// Not in the service range: passed on untouched.
	ret, _ = r.run(t, testpkt.IPv4(testpkt.Spec{Proto: "tcp", Src: "10.18.0.50", Dst: "10.18.0.60", Sport: 1, Dport: 2}))
	assert.EqualValues(t, 0xffffffff, ret)
	// Not IPv4, or ICMP: passed on.
	ret, _ = r.run(t, testpkt.ARP())
	assert.EqualValues(t, 0xffffffff, ret)
	ret, _ = r.run(t, testpkt.IPv4(testpkt.Spec{Proto: "icmp", Src: "10.18.0.50", Dst: "10.30.9.1"}))
	assert.EqualValues(t, 0xffffffff, ret)
	// A truncated TCP header in the service range is not touched.
	ret, _ = r.run(t, frame[:14+20+8])
	assert.EqualValues(t, 0xffffffff, ret)
}

func TestSessionsExpire(t *testing.T) {
	r := newRig(t)
	frame := testpkt.IPv4(testpkt.Spec{Proto: "udp", Src: "10.18.0.50", Dst: "10.30.9.1", Sport: 7, Dport: 53})
	_, out := r.run(t, frame)
	ip, _ := decode(t, out)
	first := ip.DstIP.String()
	// Age the session beyond the UDP idle timeout: the next packet starts a new one, on the
	// next backend.
	key := proxyPxSessionKey{Saddr: be32(netip.MustParseAddr("10.18.0.50")), Daddr: be32(r.svc), Sport: htons(7), Dport: htons(53), Proto: 17}
	var s proxyPxSession
	require.NoError(t, r.p.objs.PxSessions.Lookup(&key, &s))
	s.LastSeen -= uint64(61 * time.Second)
	require.NoError(t, r.p.objs.PxSessions.Update(&key, &s, ebpf.UpdateExist))
	_, out = r.run(t, frame)
	ip, _ = decode(t, out)
	assert.NotEqual(t, first, ip.DstIP.String(), "an expired session is balanced anew")
}

// TestSessionStampedAheadIsFresh: another CPU may stamp a session after this one read the
// clock. A last_seen ahead of now must not underflow into "idle for ages" (it did: sessions
// were re-created mid-connection and replies went astray under bidirectional load).
func TestSessionStampedAheadIsFresh(t *testing.T) {
	r := newRig(t)
	frame := testpkt.IPv4(testpkt.Spec{Proto: "tcp", Src: "10.18.0.50", Dst: "10.30.9.1", Sport: 9, Dport: 80, SYN: true})
	r.run(t, frame)
	key := proxyPxSessionKey{Saddr: be32(netip.MustParseAddr("10.18.0.50")), Daddr: be32(r.svc), Sport: htons(9), Dport: htons(80), Proto: 6}
	var s proxyPxSession
	require.NoError(t, r.p.objs.PxSessions.Lookup(&key, &s))
	var ts unix.Timespec
	require.NoError(t, unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts))
	s.LastSeen = uint64(ts.Nano()) + uint64(time.Second)
	require.NoError(t, r.p.objs.PxSessions.Update(&key, &s, ebpf.UpdateExist))
	before, err := r.p.Stats()
	require.NoError(t, err)
	r.run(t, frame)
	after, err := r.p.Stats()
	require.NoError(t, err)
	assert.Equal(t, before.NewSessions, after.NewSessions, "the session is still used, not re-created")
}

func TestUpcallHeaderMatchesC(t *testing.T) {
	assert.EqualValues(t, upcallHeaderLen, unsafe.Sizeof(upcallHeader{}), "struct px_upcall is two u32")
}

func TestUnreachableIsWellFormed(t *testing.T) {
	pkt := testpkt.IPv4(testpkt.Spec{Proto: "tcp", Src: "10.18.0.50", Dst: "10.30.9.1", Sport: 40000, Dport: 80, SYN: true, IPOptions: true})
	frame := unreachable(pkt, []byte{2, 0, 0, 0, 0, 0x50}, []byte{2, 0, 0, 0, 0, 1}, icmpPortUnreachable)
	p := gopacket.NewPacket(frame, layers.LayerTypeEthernet, gopacket.Default)
	icmp, ok := p.Layer(layers.LayerTypeICMPv4).(*layers.ICMPv4)
	require.True(t, ok)
	assert.Equal(t, layers.CreateICMPv4TypeCode(3, 3), icmp.TypeCode)
	ip := p.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
	assert.Equal(t, "10.30.9.1", ip.SrcIP.String())
	assert.Equal(t, "10.18.0.50", ip.DstIP.String())
	assert.Equal(t, uint16(0xffff), sum(frame[14:34]))
	assert.Equal(t, uint16(0xffff), sum(frame[34:]))
	assert.Nil(t, unreachable(pkt[:20], nil, nil, 3), "a truncated packet gets no answer")
}

func TestCompleteL4Checksum(t *testing.T) {
	for _, proto := range []string{"tcp", "udp"} {
		frame := testpkt.IPv4(testpkt.Spec{Proto: proto, Src: "10.18.0.50", Dst: "10.30.9.1", Sport: 1, Dport: 2, IPOptions: true})
		want := append([]byte(nil), frame...)
		ihl := int(frame[14]&0x0f) * 4
		off := 14 + ihl + map[string]int{"tcp": 16, "udp": 6}[proto]
		frame[off], frame[off+1] = 0x12, 0x34 // what offload left: a partial sum
		completeL4Checksum(frame)
		assert.Equal(t, want, frame, proto)
	}
	completeL4Checksum([]byte{1, 2, 3}) // never panics
}

func htons(v uint16) uint16 {
	var b [2]byte
	binary.BigEndian.PutUint16(b[:], v)
	return binary.NativeEndian.Uint16(b[:])
}

// FuzzProxy runs arbitrary frames through the program with a service installed: it must run
// and answer pass, drop or redirect, nothing else. A redirected frame is checked against a
// software recomputation: only the MACs, the addresses and the two checksum fields changed,
// and both checksums still sum as they did before (valid stays valid, whatever a fuzzed
// frame's checksums were).
func FuzzProxy(f *testing.F) {
	f.Add(testpkt.IPv4(testpkt.Spec{Proto: "tcp", Src: "10.18.0.50", Dst: "10.30.9.1", Sport: 1, Dport: 2, SYN: true}))
	f.Add(testpkt.IPv4(testpkt.Spec{Proto: "udp", Src: "10.18.0.50", Dst: "10.30.9.1", Sport: 1, Dport: 2, IPOptions: true}))
	f.Add(testpkt.ARP())
	node := testenv.Node(f)
	p, err := New(node, nil)
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { _ = p.Close() })
	_ = p.Install(netip.MustParseAddr("10.30.9.1"), "s", []*netsetup.Instance{{NSIP: netip.MustParseAddr("10.18.0.60"), VethIndex: 1, MAC: make([]byte, 6)}})
	_ = p.putClient(&netsetup.Instance{NSIP: netip.MustParseAddr("10.18.0.50"), InstanceIP: netip.MustParseAddr("10.30.9.100"), VethIndex: 1, MAC: make([]byte, 6)})
	f.Fuzz(func(t *testing.T, frame []byte) {
		if len(frame) < 14 {
			return
		}
		out := make([]byte, len(frame)+64)
		ret, err := p.objs.ProxyIn.Run(&ebpf.RunOptions{Data: frame, DataOut: out})
		if err != nil {
			return // the kernel refused the frame
		}
		if ret != 0xffffffff && ret != 2 && ret != tcRedirect {
			t.Fatalf("verdict %d", ret)
		}
		if ret == tcRedirect {
			checkRewrite(t, frame, out[:len(frame)])
		}
	})
}

// checkRewrite compares a frame the proxy redirected with the frame that went in: the bytes
// outside the MACs, the IPv4 checksum, the addresses and the L4 checksum are unchanged, and
// the IPv4 header and the L4 segment with its pseudo-header have the same one's-complement
// residual as before (0x0000 and 0xffff are both zero). The L4 residual covers the frame from
// the L4 header on, with a pseudo-header length that is the same both times.
func checkRewrite(t *testing.T, in, out []byte) {
	t.Helper()
	ihl := int(in[14]&0x0f) * 4
	l4 := 14 + ihl
	csum := l4 + 16
	if in[23] == 17 {
		csum = l4 + 6
	}
	changed := func(i int) bool {
		return i < 12 || i == 24 || i == 25 || (i >= 26 && i < 34) || i == csum || i == csum+1
	}
	for i := range in {
		if !changed(i) && in[i] != out[i] {
			t.Fatalf("byte %d changed: %#x -> %#x", i, in[i], out[i])
		}
	}
	zero := func(v uint16) uint16 {
		if v == 0xffff {
			return 0
		}
		return v
	}
	if a, b := zero(inetcsum.Checksum(in[14:l4])), zero(inetcsum.Checksum(out[14:l4])); a != b {
		t.Fatalf("IPv4 header residual %#x became %#x", a, b)
	}
	if in[23] == 17 && in[csum] == 0 && in[csum+1] == 0 {
		if out[csum] != 0 || out[csum+1] != 0 {
			t.Fatalf("a zero UDP checksum became %#x", out[csum:csum+2])
		}
		return
	}
	l4sum := func(f []byte) uint16 {
		pseudo := []byte{0, 0, 0, 0, 0, 0, 0, 0, 0, f[23], 0, 0}
		copy(pseudo, f[26:34])
		return zero(inetcsum.Fold(inetcsum.Add(inetcsum.Add(0, pseudo), f[l4:])))
	}
	if a, b := l4sum(in), l4sum(out); a != b {
		t.Fatalf("L4 residual %#x became %#x", a, b)
	}
}

// TestLastSeenRefreshedPerTick: a session's last_seen is written once per tick (a tenth of the
// shortest timeout, 1 s by default), not on every packet, and a packet after a tick refreshes
// it, so a running flow never expires.
func TestLastSeenRefreshedPerTick(t *testing.T) {
	r := newRig(t)
	frame := testpkt.IPv4(testpkt.Spec{Proto: "udp", Src: "10.18.0.50", Dst: "10.30.9.1", Sport: 11, Dport: 53})
	r.run(t, frame)
	key := proxyPxSessionKey{Saddr: be32(netip.MustParseAddr("10.18.0.50")), Daddr: be32(r.svc), Sport: htons(11), Dport: htons(53), Proto: 17}
	r.age(t, key, 500*time.Millisecond) // within the tick
	stamped := r.session(t, key).LastSeen
	r.run(t, frame)
	assert.Equal(t, stamped, r.session(t, key).LastSeen, "no store within a tick")
	r.age(t, key, 59*time.Second) // a tick and more, not yet the UDP idle timeout
	aged := r.session(t, key).LastSeen
	r.run(t, frame)
	assert.Greater(t, r.session(t, key).LastSeen, aged+uint64(58*time.Second), "refreshed after a tick")
	assert.EqualValues(t, 1, r.stats(t).NewSessions, "the same session all along")
}
