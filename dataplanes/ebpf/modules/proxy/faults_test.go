package proxy

import (
	"net/netip"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/edgebpf/edgebpf/internal/testpkt"
)

const tcxNext = 0xffffffff // TCX_NEXT: passed on untouched

func (r *rig) stats(t *testing.T) Stats {
	t.Helper()
	st, err := r.p.Stats()
	require.NoError(t, err)
	return st
}

func (r *rig) session(t *testing.T, key proxyPxSessionKey) proxyPxSession {
	t.Helper()
	var s proxyPxSession
	require.NoError(t, r.p.objs.PxSessions.Lookup(&key, &s))
	return s
}

// age moves a session's last packet back by d.
func (r *rig) age(t *testing.T, key proxyPxSessionKey, d time.Duration) {
	t.Helper()
	s := r.session(t, key)
	s.LastSeen -= uint64(d)
	require.NoError(t, r.p.objs.PxSessions.Update(&key, &s, ebpf.UpdateExist))
}

// tcpConn is one TCP connection through the rig: the client's segments to the service IP and
// the chosen backend's replies.
type tcpConn struct {
	r       *rig
	backend string
}

func (r *rig) connect(t *testing.T, sport uint16) *tcpConn {
	t.Helper()
	ret, out := r.run(t, testpkt.IPv4(testpkt.Spec{Proto: "tcp", Src: "10.18.0.50", Dst: "10.30.9.1", Sport: sport, Dport: 80, SYN: true}))
	require.EqualValues(t, tcRedirect, ret)
	ip, _ := decode(t, out)
	return &tcpConn{r: r, backend: ip.DstIP.String()}
}

// fromClient sends a segment of the client's with flags; it returns the verdict and, if
// translated, the backend it went to.
func (c *tcpConn) fromClient(t *testing.T, sport uint16, fin, rst bool) (uint32, string) {
	t.Helper()
	ret, out := c.r.run(t, testpkt.IPv4(testpkt.Spec{Proto: "tcp", Src: "10.18.0.50", Dst: "10.30.9.1", Sport: sport, Dport: 80, FIN: fin, RST: rst}))
	if ret != tcRedirect {
		return ret, ""
	}
	ip, _ := decode(t, out)
	return ret, ip.DstIP.String()
}

func (c *tcpConn) fromServer(t *testing.T, sport uint16, fin bool) uint32 {
	t.Helper()
	ret, _ := c.r.run(t, testpkt.IPv4(testpkt.Spec{Proto: "tcp", Src: c.backend, Dst: c.r.clientInstance.String(), Sport: 80, Dport: sport, FIN: fin}))
	return ret
}

func clientKey(r *rig, sport uint16) proxyPxSessionKey {
	return proxyPxSessionKey{Saddr: be32(netip.MustParseAddr("10.18.0.50")), Daddr: be32(r.svc), Sport: htons(sport), Dport: htons(80), Proto: 6}
}

// TestHalfClosedKeepsItsSession: the client's FIN alone does not end the session; its next
// ACK, long after the closing linger, still goes to the same backend. Both FINs do, after the
// linger; the client's late ACK is then passed on, never balanced to another backend.
// (Issue 15, finding 7.)
func TestHalfClosedKeepsItsSession(t *testing.T) {
	r := newRig(t)
	c := r.connect(t, 5000)
	ret, to := c.fromClient(t, 5000, true, false)
	require.EqualValues(t, tcRedirect, ret)
	require.Equal(t, c.backend, to)
	assert.Zero(t, r.session(t, clientKey(r, 5000)).Closing, "one FIN is a half-close, not the end")
	r.age(t, clientKey(r, 5000), 11*time.Second) // past the closing linger
	require.EqualValues(t, tcRedirect, c.fromServer(t, 5000, false), "the server still answers")
	for range 3 { // whatever round robin would pick next
		ret, to = c.fromClient(t, 5000, false, false)
		require.EqualValues(t, tcRedirect, ret)
		assert.Equal(t, c.backend, to, "the half-closed connection's ACK stays on its backend")
	}

	// The server's FIN closes the connection: both directions linger, then expire.
	require.EqualValues(t, tcRedirect, c.fromServer(t, 5000, true))
	assert.EqualValues(t, 1, r.session(t, clientKey(r, 5000)).Closing)
	r.age(t, clientKey(r, 5000), 11*time.Second)
	before := r.stats(t)
	ret, _ = c.fromClient(t, 5000, false, false)
	assert.EqualValues(t, tcxNext, ret, "a segment without a session is a miss, passed on")
	after := r.stats(t)
	assert.Equal(t, before.NewSessions, after.NewSessions, "never a new session")
	assert.Equal(t, before.NoSession+1, after.NoSession)
}

// TestRSTClosesBothDirections: one RST ends the session both ways after the linger.
func TestRSTClosesBothDirections(t *testing.T) {
	r := newRig(t)
	c := r.connect(t, 5001)
	ret, _ := c.fromClient(t, 5001, false, true)
	require.EqualValues(t, tcRedirect, ret)
	assert.EqualValues(t, 1, r.session(t, clientKey(r, 5001)).Closing)
	rkey := proxyPxSessionKey{Saddr: be32(netip.MustParseAddr(c.backend)), Daddr: be32(r.clientInstance), Sport: htons(80), Dport: htons(5001), Proto: 6}
	assert.EqualValues(t, 1, r.session(t, rkey).Closing, "the reverse direction closes too")
}

// TestOnlySYNStartsTCPSession: a TCP segment other than a SYN, without a session, is passed
// on and counted, never balanced; a SYN-ACK neither.
func TestOnlySYNStartsTCPSession(t *testing.T) {
	r := newRig(t)
	for _, spec := range []testpkt.Spec{
		{Proto: "tcp", Src: "10.18.0.50", Dst: "10.30.9.1", Sport: 6000, Dport: 80},
		{Proto: "tcp", Src: "10.18.0.50", Dst: "10.30.9.1", Sport: 6001, Dport: 80, FIN: true},
		{Proto: "tcp", Src: "10.18.0.50", Dst: "10.30.7.7", Sport: 6002, Dport: 80}, // unknown address: no upcall either
	} {
		ret, _ := r.run(t, testpkt.IPv4(spec))
		assert.EqualValues(t, tcxNext, ret)
	}
	st := r.stats(t)
	assert.Zero(t, st.NewSessions)
	assert.Zero(t, st.Upcalls)
	assert.EqualValues(t, 3, st.NoSession)
}

// TestSpoofedSourcesAreDropped: a packet to the service range from a source that is not the
// namespace IP of the instance on the veth it arrived on is dropped in the kernel and counted,
// not sent up. (Issue 15, finding 5.)
func TestSpoofedSourcesAreDropped(t *testing.T) {
	r := newRig(t)
	// An unknown source, to a service and to an unknown address.
	for _, dst := range []string{"10.30.9.1", "10.30.7.7"} {
		ret, _ := r.run(t, testpkt.IPv4(testpkt.Spec{Proto: "tcp", Src: "10.77.1.2", Dst: dst, Sport: 1, Dport: 80, SYN: true}))
		assert.EqualValues(t, 2, ret, "dropped (TC_ACT_SHOT)")
	}
	// A known client's address from another instance's veth (the test run's is ifindex 1).
	other := *r.client
	other.NSIP, other.VethIndex = netip.MustParseAddr("10.18.0.51"), 2
	require.NoError(t, r.p.putClient(&other))
	ret, _ := r.run(t, testpkt.IPv4(testpkt.Spec{Proto: "udp", Src: "10.18.0.51", Dst: "10.30.9.1", Sport: 1, Dport: 53}))
	assert.EqualValues(t, 2, ret)
	// An existing session's 5-tuple, sent from another veth than the one it was made on.
	c := r.connect(t, 7000)
	key := clientKey(r, 7000)
	s := r.session(t, key)
	s.InIfindex = 2
	require.NoError(t, r.p.objs.PxSessions.Update(&key, &s, ebpf.UpdateExist))
	ret, _ = c.fromClient(t, 7000, false, false)
	assert.EqualValues(t, 2, ret)

	st := r.stats(t)
	assert.EqualValues(t, 4, st.Spoofed)
	assert.Zero(t, st.Upcalls, "no spoofed packet goes up")
	assert.EqualValues(t, 1, st.NewSessions, "only the real client's")
}

// TestUpcallsAreRateLimited: misses beyond the per-CPU rate are dropped and counted, not sent
// up. One test run of 200 repetitions runs on one CPU, far faster than the rate refills.
func TestUpcallsAreRateLimited(t *testing.T) {
	r := newRigWith(t, []byte(`{"upcall_rate": 10}`))
	frame := testpkt.IPv4(testpkt.Spec{Proto: "tcp", Src: "10.18.0.50", Dst: "10.30.7.7", Sport: 1, Dport: 80, SYN: true})
	ret, err := r.p.objs.ProxyIn.Run(&ebpf.RunOptions{Data: frame, Repeat: 200})
	require.NoError(t, err)
	assert.EqualValues(t, 2, ret)
	st := r.stats(t)
	assert.EqualValues(t, 200, st.Upcalls+st.UpcallsShed)
	assert.GreaterOrEqual(t, st.Upcalls, uint64(10), "a full bucket: one second's worth goes up")
	assert.LessOrEqual(t, st.Upcalls, uint64(12), "then the rate: 10 a second")
}

func TestUpcallRateIsValidated(t *testing.T) {
	r := newRig(t)
	for _, bad := range []string{`{"upcall_rate": 0}`, `{"upcall_rate": -1}`, `{"tcp_closing": "0s"}`} {
		_, err := New(r.p.node, []byte(bad))
		assert.Error(t, err, bad)
	}
}

// TestFirstFragmentIsDropped: every fragment of a datagram is dropped and counted, the first
// (more-fragments set, offset 0, ports present) too; none starts a session. (Issue 15,
// finding 8: the first was forwarded, the rest dropped.)
func TestFirstFragmentIsDropped(t *testing.T) {
	r := newRig(t)
	for _, spec := range []testpkt.Spec{
		{Proto: "udp", Src: "10.18.0.50", Dst: "10.30.9.1", Sport: 1, Dport: 53, MoreFrags: true},
		{Proto: "udp", Src: "10.18.0.50", Dst: "10.30.9.1", FragOffset: 185, MoreFrags: true},
		{Proto: "udp", Src: "10.18.0.50", Dst: "10.30.9.1", FragOffset: 370},
	} {
		ret, _ := r.run(t, testpkt.IPv4(spec))
		assert.EqualValues(t, 2, ret)
	}
	st := r.stats(t)
	assert.EqualValues(t, 3, st.Fragments)
	assert.Zero(t, st.Translated)
	assert.Zero(t, st.NewSessions)
}
