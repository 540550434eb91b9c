package userspace

import (
	"net/netip"
	"testing"
	"time"
	"unsafe"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The flooding instance of the session table tests: another client of the fake node.
const (
	flooderNS   = "10.18.0.9"
	flooderInst = "10.30.0.9"
)

// newFloodCore is a test core with cfg and a second client instance, the flooder.
func newFloodCore(t testing.TB, cfg Config) *testCore {
	t.Helper()
	require.NoError(t, cfg.validate())
	tc := &testCore{reg: newFakeRegistry(), out: make([]byte, replySize)}
	tc.reg.instances["flooder"] = append(tc.reg.instances["flooder"], instance("flooder", 0, flooderNS, flooderInst))
	tc.core = newCore(cfg, tc.reg)
	tc.now = func() int64 { return int64(tc.clock) }
	return tc
}

// connect opens a TCP connection from client namespace IP ns to the service through the
// proxy (SYN, SYN-ACK, ACK) and returns the server namespace IP it was balanced to.
func (tc *testCore) connect(t testing.TB, ns, inst string, sport uint16) string {
	t.Helper()
	d := decode(t, tc.pass(build(t, spec{proto: "tcp", src: ns, dst: serverSvc, sport: sport, dport: 7400, flags: "S"})))
	require.False(t, d.tcp.RST, "the SYN is forwarded, not refused")
	server := d.ip.DstIP.String()
	d = decode(t, tc.pass(build(t, spec{proto: "tcp", src: server, dst: inst, sport: 7400, dport: sport, flags: "SA"})))
	require.Equal(t, ns, d.ip.DstIP.String())
	d = decode(t, tc.pass(build(t, spec{proto: "tcp", src: ns, dst: serverSvc, sport: sport, dport: 7400, flags: "A"})))
	require.Equal(t, server, d.ip.DstIP.String())
	return server
}

// synFlood sends n SYNs from the flooder to the service, each on a new tuple, that nothing
// answers, with the clock moving step per SYN. Every one is forwarded: the flooder only
// ever displaces its own sessions.
func (tc *testCore) synFlood(t testing.TB, n int, step time.Duration) {
	t.Helper()
	syn := build(t, spec{proto: "tcp", src: flooderNS, dst: serverSvc, sport: 1, dport: 1, flags: "S", payload: []byte{}})
	pkt := make([]byte, len(syn))
	for i := range n {
		copy(pkt, syn)
		// distinct ports; the TCP checksum is not the proxy's business
		pkt[20], pkt[21] = byte(i>>8), byte(i)
		pkt[22], pkt[23] = byte(i>>24), byte(i>>16)
		if p, _ := tc.handle(pkt, tc.out); p == nil || pkt[33]&tcpRST != 0 {
			t.Fatalf("flood SYN %d dropped or refused", i)
		}
		tc.clock += step
	}
}

// TestSYNFlood is finding 6 of issue 15 on the table alone: about 1.1 M SYNs from one
// instance, which no server answers, used to fill the table (then 2^20 sessions, each with
// the full TCP idle time) and lock every client out. Now the flooder holds at most its
// share, established sessions of other clients survive, new connections from anyone are
// admitted during and after the flood, and the flood's sessions expire within TCPHalfOpen.
func TestSYNFlood(t *testing.T) {
	cfg := DefaultConfig
	tc := newFloodCore(t, cfg)
	established := tc.connect(t, clientNS, clientInst, 40000)

	const flood = 1_100_000
	tc.synFlood(t, flood, time.Microsecond) // 1.1 s of flood at 1 Mpps: nothing expires
	assert.LessOrEqual(t, tc.sessionCount(), cfg.MaxSessions)
	assert.Equal(t, 2*tc.sessionCount(), len(tc.index), "each session under its two keys, nothing else")
	fl := tc.clients[tc.clientOf[netip.MustParseAddr(flooderNS).As4()]]
	assert.Equal(t, cfg.MaxSessionsPerClient, fl.n, "the flooder holds its share, no more")
	assert.LessOrEqual(t, int(tc.next), cfg.MaxSessions+1, "no slot beyond the table")
	assert.Len(t, tc.slots, cfg.MaxSessions+1, "the table never grows")
	assert.EqualValues(t, flood-cfg.MaxSessionsPerClient, tc.st.evictedShare.Load())
	assert.Zero(t, tc.st.evicted.Load(), "the flood never filled the table")

	d := decode(t, tc.pass(build(t, spec{proto: "tcp", src: clientNS, dst: serverSvc, sport: 40000, dport: 7400, flags: "A", payload: []byte("x")})))
	assert.Equal(t, established, d.ip.DstIP.String(), "the established session survives the flood")
	tc.connect(t, clientNS, clientInst, 40001)
	tc.connect(t, flooderNS, flooderInst, 40002) // the flooder's own connects work too
	assert.Zero(t, tc.st.refused.Load(), "no connection refused")

	// After the flood: its half-open sessions expire within TCPHalfOpen and the reaper
	// removes them; established sessions stay.
	tc.clock += cfg.TCPHalfOpen
	tc.reap()
	assert.Equal(t, 3, tc.sessionCount(), "the three connections, nothing of the flood")
	tc.connect(t, clientNS, clientInst, 40003)
}

// TestEvictionOrder fills a small table from several clients and checks which session makes
// way: the least recently used expendable one (half-open, unreplied, ended) before any
// established one, and the table's least recently used established one when all are.
func TestEvictionOrder(t *testing.T) {
	cfg := DefaultConfig
	cfg.MaxSessions, cfg.MaxSessionsPerClient = 4, 4
	tc := newFloodCore(t, cfg)
	tc.connect(t, clientNS, clientInst, 40000)
	tc.clock += time.Second
	tc.connect(t, clientNS, clientInst, 40001)
	tc.clock += time.Second
	tc.synFlood(t, 100, time.Millisecond)
	assert.Equal(t, 4, tc.sessionCount())
	assert.EqualValues(t, 98, tc.st.evicted.Load(), "each SYN beyond the table evicted an older SYN")
	for _, port := range []uint16{40000, 40001} {
		d := decode(t, tc.pass(build(t, spec{proto: "tcp", src: clientNS, dst: serverSvc, sport: port, dport: 7400, flags: "A"})))
		assert.False(t, d.tcp.RST, "established session %d kept", port)
	}

	// A full table of established sessions: the least recently used goes.
	tc.connect(t, flooderNS, flooderInst, 50000)
	tc.connect(t, flooderNS, flooderInst, 50001)
	assert.Equal(t, 4, tc.sessionCount())
	tc.clock += time.Second
	require.NotNil(t, tc.pass(build(t, spec{proto: "tcp", src: clientNS, dst: serverSvc, sport: 40000, dport: 7400, flags: "A"})))
	tc.connect(t, flooderNS, flooderInst, 50002)
	d := decode(t, tc.pass(build(t, spec{proto: "tcp", src: clientNS, dst: serverSvc, sport: 40001, dport: 7400, flags: "A"})))
	assert.True(t, d.tcp.RST, "the least recently used session was evicted")
	d = decode(t, tc.pass(build(t, spec{proto: "tcp", src: clientNS, dst: serverSvc, sport: 40000, dport: 7400, flags: "A"})))
	assert.False(t, d.tcp.RST, "the recently used one was kept")
}

// TestClientShare checks that a client at its share evicts its own sessions, half-open
// ones first, and never another client's.
func TestClientShare(t *testing.T) {
	cfg := DefaultConfig
	cfg.MaxSessions, cfg.MaxSessionsPerClient = 8, 3
	tc := newFloodCore(t, cfg)
	tc.connect(t, clientNS, clientInst, 40000)
	tc.connect(t, flooderNS, flooderInst, 50000)
	tc.synFlood(t, 50, time.Millisecond)
	assert.Equal(t, 2+2, tc.sessionCount(), "the client's, and the flooder's three")
	d := decode(t, tc.pass(build(t, spec{proto: "tcp", src: flooderNS, dst: serverSvc, sport: 50000, dport: 7400, flags: "A"})))
	assert.False(t, d.tcp.RST, "the flooder's established session went last")
	assert.Zero(t, tc.st.evicted.Load())
	assert.EqualValues(t, 48, tc.st.evictedShare.Load())
}

// TestHalfOpenExpiry checks the timeouts of the TCP states: a SYN the server never answers
// lives TCPHalfOpen after the last (re)transmission, an answered one TCPIdle.
func TestHalfOpenExpiry(t *testing.T) {
	tc := newFloodCore(t, DefaultConfig)
	syn := build(t, spec{proto: "tcp", src: clientNS, dst: serverSvc, sport: 40000, dport: 7400, flags: "S"})
	require.Equal(t, server0NS, decode(t, tc.pass(syn)).ip.DstIP.String())
	tc.clock += tc.cfg.TCPHalfOpen - time.Second
	require.Equal(t, server0NS, decode(t, tc.pass(syn)).ip.DstIP.String(), "a retransmitted SYN keeps the session")
	tc.clock += tc.cfg.TCPHalfOpen - time.Second
	tc.reap()
	assert.Equal(t, 1, tc.sessionCount())
	tc.clock += time.Second
	tc.reap()
	assert.Equal(t, 0, tc.sessionCount(), "unanswered for TCPHalfOpen: gone")

	server := tc.connect(t, clientNS, clientInst, 40001)
	tc.clock += tc.cfg.TCPIdle - time.Second
	tc.reap()
	d := decode(t, tc.pass(build(t, spec{proto: "tcp", src: clientNS, dst: serverSvc, sport: 40001, dport: 7400, flags: "A"})))
	assert.Equal(t, server, d.ip.DstIP.String(), "an answered connection lives TCPIdle")
}

// TestSessionSize pins the slot size the documentation gives (Config.MaxSessions).
func TestSessionSize(t *testing.T) {
	assert.EqualValues(t, 88, unsafe.Sizeof(session{}))
}
