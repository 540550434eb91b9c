package tunnel

import (
	"encoding/binary"
	"net/netip"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/edgebpf/edgebpf/internal/inetcsum"
	"github.com/edgebpf/edgebpf/internal/testpkt"
	"github.com/edgebpf/edgebpf/netsetup"
)

// remoteService installs service IP 10.30.5.1 with one backend on the peer worker (namespace
// IP 10.18.1.9) and a client of this worker, 10.18.0.50 with instance IP 10.30.0.100, on the
// veth a test run's packets arrive on (ifindex 1).
func (r *rig) remoteService(t *testing.T) {
	cl := tunnelPxClient{InstanceIp: be32(netip.MustParseAddr("10.30.0.100")), Ifindex: 1, Mac: [6]uint8{2, 0, 0, 0, 0, 0x50}}
	require.NoError(t, r.p.Shared().Clients.Update(be32(netip.MustParseAddr("10.18.0.50")), &cl, ebpf.UpdateAny))
	backend := &netsetup.Instance{Name: "server-0", NSIP: netip.MustParseAddr("10.18.1.9"), InstanceIP: netip.MustParseAddr("10.30.0.9"),
		Node: "c-w1", NodeIP: netip.MustParseAddr(peerIP)}
	require.NoError(t, r.p.Install(netip.MustParseAddr("10.30.5.1"), "server", []*netsetup.Instance{backend}))
}

func (r *rig) proxy(t *testing.T, frame []byte) (uint32, []byte) {
	t.Helper()
	out := make([]byte, len(frame)+HeaderLen+64)
	prog, _ := r.p.Programs()
	res, err := prog.Run(&ebpf.RunOptions{Data: frame, DataOut: out})
	require.NoError(t, err)
	return res, out
}

func TestEncapWrapsTheTranslatedPacket(t *testing.T) {
	for _, c := range []struct {
		name string
		spec testpkt.Spec
	}{
		{"tcp", testpkt.Spec{Proto: "tcp", SYN: true, Payload: []byte("hello over the tunnel")}},
		{"udp", testpkt.Spec{Proto: "udp", Payload: []byte("hello over the tunnel")}},
		{"tcp with ipv4 options", testpkt.Spec{Proto: "tcp", SYN: true, IPOptions: true}},
		{"udp without checksum, full overlay mtu", testpkt.Spec{Proto: "udp", Payload: make([]byte, 1450-28)}},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := newRig(t)
			r.remoteService(t)
			spec := c.spec
			spec.Src, spec.Dst, spec.Sport, spec.Dport = "10.18.0.50", "10.30.5.1", 40000, 80
			in := packet(testpkt.IPv4(spec))
			if c.name == "udp without checksum, full overlay mtu" {
				in[len(in)-len(spec.Payload)-2], in[len(in)-len(spec.Payload)-1] = 0, 0
			}
			res, out := r.proxy(t, append(testpkt.IPv4(spec)[:14:14], in...))
			require.EqualValues(t, tcRedirect, res, "sent out the underlay (bpf_redirect_neigh)")
			out = out[:14+HeaderLen+len(in)]

			// The outer headers: IPv4 from this node to the peer, DF, checksum right; UDP
			// 50103 -> 50103, length of the inner packet + 8, checksum 0.
			o := out[14:]
			assert.Equal(t, byte(0x45), o[0])
			assert.EqualValues(t, HeaderLen+len(in), binary.BigEndian.Uint16(o[2:]), "outer total length")
			assert.Equal(t, uint16(0x4000), binary.BigEndian.Uint16(o[6:]), "DF, not a fragment")
			assert.Equal(t, byte(17), o[9])
			assert.Equal(t, uint16(0), inetcsum.Checksum(o[:20]), "the outer IPv4 checksum verifies")
			assert.Equal(t, netip.MustParseAddr(localIP).AsSlice(), o[12:16])
			assert.Equal(t, netip.MustParseAddr(peerIP).AsSlice(), o[16:20])
			assert.EqualValues(t, Port, binary.BigEndian.Uint16(o[20:]))
			assert.EqualValues(t, Port, binary.BigEndian.Uint16(o[22:]))
			assert.EqualValues(t, 8+len(in), binary.BigEndian.Uint16(o[24:]), "UDP length")
			assert.Equal(t, uint16(0), binary.BigEndian.Uint16(o[26:]), "no outer UDP checksum")

			// The inner packet: translated as for a local backend, checksums right, and
			// otherwise the bytes that came in.
			inner := o[HeaderLen:]
			ip := verify(t, inner)
			assert.Equal(t, "10.30.0.100", ip.SrcIP.String(), "from the client's instance IP")
			assert.Equal(t, "10.18.1.9", ip.DstIP.String(), "to the remote backend's namespace IP")
			want := append([]byte(nil), in...)
			copy(want[12:20], inner[12:20]) // addresses
			copy(want[10:12], inner[10:12]) // IPv4 checksum
			ihl := int(in[0]&0xf) * 4
			ck := ihl + map[string]int{"tcp": 16, "udp": 6}[spec.Proto]
			if binary.BigEndian.Uint16(in[ck:]) == 0 {
				assert.Equal(t, uint16(0), binary.BigEndian.Uint16(inner[ck:]), "a zero UDP checksum stays zero")
			}
			copy(want[ck:ck+2], inner[ck:ck+2]) // L4 checksum
			assert.Equal(t, want, inner, "nothing else of the inner packet changes")

			st, err := r.p.Stats()
			require.NoError(t, err)
			assert.EqualValues(t, 1, st.Tunnelled)

			// The server's reply comes back through the tunnel and is reverse-translated.
			rs := spec
			rs.Src, rs.Dst, rs.Sport, rs.Dport, rs.SYN, rs.IPOptions = "10.18.1.9", "10.30.0.100", 80, 40000, false, false
			res, back := r.decap(t, testpkt.Tunnel(peerIP, localIP, Port, Port, packet(testpkt.IPv4(rs))))
			require.EqualValues(t, tcRedirect, res)
			rip := verify(t, packet(back))
			assert.Equal(t, "10.30.5.1", rip.SrcIP.String(), "the client sees the service IP")
			assert.Equal(t, "10.18.0.50", rip.DstIP.String())
			assert.Equal(t, []byte{2, 0, 0, 0, 0, 0x50}, back[0:6], "to the client's MAC")
		})
	}
}

func TestEncapDropsWhatCannotGo(t *testing.T) {
	spec := testpkt.Spec{Proto: "udp", Src: "10.18.0.50", Dst: "10.30.5.1", Sport: 40000, Dport: 80}

	t.Run("too big for the underlay", func(t *testing.T) {
		r := newRig(t)
		r.remoteService(t)
		big := spec
		big.Payload = make([]byte, 1500-28-28+1) // one byte beyond the underlay's MTU once wrapped
		res, _ := r.proxy(t, testpkt.IPv4(big))
		assert.EqualValues(t, tcShot, res)
		st, err := r.tu.Stats()
		require.NoError(t, err)
		assert.EqualValues(t, 1, st.TooBig)
		assert.Zero(t, st.Sent)
	})
	t.Run("no tunnel deployed", func(t *testing.T) {
		r := newRig(t)
		r.remoteService(t)
		require.NoError(t, r.tu.Close()) // switches the proxy's tunnel off
		res, _ := r.proxy(t, testpkt.IPv4(spec))
		assert.EqualValues(t, tcShot, res, "never redirect_peer to an instance on another worker")
		st, err := r.p.Stats()
		require.NoError(t, err)
		assert.EqualValues(t, 1, st.NoTunnel)
		assert.Zero(t, st.Tunnelled)
	})
}

// TestRepliesToARemoteClientGoBackUnchanged follows a TCP connection from a client on the
// peer worker to this worker's server 10.18.1.5 (on the veth test runs arrive on): the
// server's replies are tunnelled back to the peer untranslated, and the connection's FINs,
// one seen by the tunnel and one by the proxy, close the pass-through session.
func TestRepliesToARemoteClientGoBackUnchanged(t *testing.T) {
	r := newRig(t)
	cl := tunnelPxClient{InstanceIp: be32(netip.MustParseAddr("10.30.0.5")), Ifindex: 1}
	require.NoError(t, r.p.Shared().Clients.Update(be32(netip.MustParseAddr("10.18.1.5")), &cl, ebpf.UpdateAny))
	req := func(fin bool) []byte {
		return testpkt.Tunnel(peerIP, localIP, Port, Port, packet(testpkt.IPv4(testpkt.Spec{Proto: "tcp", SYN: !fin, FIN: fin,
			Src: "10.30.0.100", Dst: "10.18.1.5", Sport: 40000, Dport: 80})))
	}
	reply := func(fin bool) []byte {
		return testpkt.IPv4(testpkt.Spec{Proto: "tcp", FIN: fin, Src: "10.18.1.5", Dst: "10.30.0.100", Sport: 80, Dport: 40000,
			Payload: []byte("reply")})
	}
	res, _ := r.decap(t, req(false))
	require.EqualValues(t, tcRedirect, res)

	in := packet(reply(false))
	res, out := r.proxy(t, reply(false))
	require.EqualValues(t, tcRedirect, res)
	o := out[14 : 14+HeaderLen+len(in)]
	assert.Equal(t, netip.MustParseAddr(peerIP).AsSlice(), o[16:20], "back to the client's worker")
	assert.Equal(t, in, o[HeaderLen:], "untranslated: the client's worker holds the session")

	key := tunnelPxSessionKey{Saddr: be32(netip.MustParseAddr("10.18.1.5")), Daddr: be32(netip.MustParseAddr("10.30.0.100")),
		Sport: htons(80), Dport: htons(40000), Proto: 6}
	var s tunnelPxSession
	res, _ = r.decap(t, req(true))
	require.EqualValues(t, tcRedirect, res)
	require.NoError(t, r.p.Shared().Sessions.Lookup(&key, &s))
	assert.Zero(t, s.Closing, "half closed: the session stays")
	res, _ = r.proxy(t, reply(true))
	require.EqualValues(t, tcRedirect, res)
	require.NoError(t, r.p.Shared().Sessions.Lookup(&key, &s))
	assert.EqualValues(t, 1, s.Closing, "both FINs seen: the session lingers, then expires")
}
