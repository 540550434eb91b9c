package speedlimit

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/edgebpf/edgebpf/bench"
	"github.com/edgebpf/edgebpf/internal/testenv"
	"github.com/edgebpf/edgebpf/netsetup"
	"github.com/edgebpf/edgebpf/stats"
	"github.com/edgebpf/edgebpf/workloads/speedlimit/wire"
)

// The integration tests build a node with a client and a server instance and run the
// servers and the bench client between them.

type pair struct {
	node           *netsetup.Node
	client, server *netsetup.Instance
}

func newPair(t *testing.T) pair {
	t.Helper()
	n := testenv.Node(t, "client", "server")
	c, _ := n.Instance("client", 0)
	s, _ := n.Instance("server", 0)
	return pair{node: n, client: c, server: s}
}

func (p pair) start(t *testing.T, mode Mode, period time.Duration) *Server {
	t.Helper()
	s, err := StartServer(ServerConfig{Mode: mode, Period: period, NS: p.server.NS, Iface: p.server.Peer,
		PeerNS: p.node.NS, PeerIface: p.server.Veth})
	require.NoError(t, err)
	t.Cleanup(func() { assert.NoError(t, s.Close()) })
	return s
}

func (p pair) endpoints() bench.Endpoints {
	return bench.Endpoints{Client: p.client.NS, Server: p.server.NS, Target: p.server.NSIP}
}

// dial opens a connected UDP socket from the client instance to the server's port.
func (p pair) dial(t *testing.T, target netip.Addr) int {
	t.Helper()
	var fd int
	require.NoError(t, p.client.NS.Do(func() error {
		var err error
		fd, err = unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		return unix.Connect(fd, &unix.SockaddrInet4{Port: wire.DefaultPort, Addr: target.As4()})
	}))
	tv := unix.NsecToTimeval(int64(time.Second))
	require.NoError(t, unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv))
	t.Cleanup(func() { unix.Close(fd) })
	return fd
}

func send(t *testing.T, fd int, op wire.Op) {
	t.Helper()
	_, err := unix.Write(fd, wire.Message{Op: op}.Append(nil))
	require.NoError(t, err)
}

func get(t *testing.T, fd int) uint32 {
	t.Helper()
	send(t, fd, wire.GetSpeedLimit)
	buf := make([]byte, 64)
	n, err := unix.Read(fd, buf)
	require.NoError(t, err, "a reply within 1 s")
	msg, err := wire.Decode(buf[:n])
	require.NoError(t, err)
	require.Equal(t, wire.Reply, msg.Op)
	return msg.Value
}

func TestEachConfigurationAnswers(t *testing.T) {
	p := newPair(t)
	_, err := SetTxChecksum(p.client.NS, p.client.Peer, false)
	require.NoError(t, err)
	for _, mode := range Modes {
		t.Run(string(mode), func(t *testing.T) {
			s := p.start(t, mode, 0)
			if mode == Userspace {
				assert.Equal(t, XDPNone, s.XDPMode())
			} else {
				assert.Equal(t, XDPNative, s.XDPMode(), "a veth pair in namespaces takes native XDP")
			}
			t.Logf("%s: xdp %s, settings %v", mode, s.XDPMode(), s.Settings())

			// Exact answers: every request counts a car; the limit follows the formula
			// (mixed answers the limit of its last timer tick: still no car, 120).
			fd := p.dial(t, p.server.NSIP)
			for c := uint64(1); c <= 110; c++ {
				want := wire.LimitKmh(c)
				if mode == Mixed {
					want = wire.LimitKmh(0)
				}
				require.Equal(t, want, get(t, fd), "car %d", c)
			}
			n, err := s.Cars()
			require.NoError(t, err)
			assert.Equal(t, uint64(110), n)
			for range 120 {
				send(t, fd, wire.OutOfRange)
			}
			require.Eventually(t, func() bool { n, _ := s.Cars(); return n == 0 }, 5*time.Second, 10*time.Millisecond,
				"OUT_OF_RANGE uncounts, never below 0")

			// The bench client: no drops, every reply well-formed.
			samples, err := bench.SpeedLimitResponse(context.Background(), p.endpoints(),
				bench.SpeedLimitResponseConfig{Clients: 4, Requests: 200, Keep: 10})
			require.NoError(t, err)
			sum := bench.SummarizeSpeedLimit(samples)
			assert.Zero(t, sum.Timeouts)
			assert.Equal(t, 40, sum.Requests, "10 kept per client")
			assert.Positive(t, sum.P50)
			require.Eventually(t, func() bool { n, _ := s.Cars(); return n == 0 }, 5*time.Second, 10*time.Millisecond,
				"every car left")

			st, err := s.Stats()
			require.NoError(t, err)
			t.Logf("%s: %v", mode, st)
			if mode == Userspace {
				assert.Equal(t, uint64(110+800), st["user_answered"])
			} else {
				assert.Equal(t, uint64(110+800), st["xdp_replied"])
				assert.Zero(t, st["user_answered"])
				assert.Zero(t, st["xdp_csum_offloaded"], "the client's checksums are complete")
				assert.Zero(t, st["xdp_pass_checksum"])
			}
		})
	}
}

// TestOffloadedChecksumsAreAnswered runs the eBPF-only server against a client that leaves its
// UDP checksums to TX offload (the veth default): the program accepts the pseudo-header seed
// and answers with a full checksum, in native mode too.
func TestOffloadedChecksumsAreAnswered(t *testing.T) {
	p := newPair(t)
	was, err := SetTxChecksum(p.client.NS, p.client.Peer, true)
	require.NoError(t, err)
	assert.True(t, was, "veths start with tx checksum offload on")
	s := p.start(t, EBPF, 0)
	fd := p.dial(t, p.server.NSIP)
	for range 10 {
		assert.Equal(t, uint32(120), get(t, fd))
	}
	st, err := s.Stats()
	require.NoError(t, err)
	t.Logf("xdp %s: %v", s.XDPMode(), st)
	assert.Equal(t, uint64(10), st["xdp_replied"])
	on, err := TxChecksum(p.client.NS, p.client.Peer)
	require.NoError(t, err)
	assert.True(t, on)
}

// TestMixedFollowsTheCount checks that the mixed configuration's limit catches up with the
// car count within one timer period: counted in the server's own timer ticks, not in
// wall-clock time, so a slow machine cannot fail it.
func TestMixedFollowsTheCount(t *testing.T) {
	p := newPair(t)
	s := p.start(t, Mixed, 50*time.Millisecond)
	fd := p.dial(t, p.server.NSIP)
	ticks := func() uint64 { st, _ := s.Stats(); return st["limit_updates"] }
	// settle waits until a tick has started and ended after now: the count read by that tick
	// is the current one.
	settle := func() {
		u := ticks()
		require.Eventually(t, func() bool { return ticks() >= u+2 }, 5*time.Second, 5*time.Millisecond)
	}
	for range 60 {
		get(t, fd)
	}
	settle()
	l, err := s.resp.Limit()
	require.NoError(t, err)
	assert.Equal(t, wire.LimitKmh(60), l)
	assert.Equal(t, wire.LimitKmh(60), get(t, fd), "the reply carries the tick's limit (61 cars now)")
	for range 30 {
		send(t, fd, wire.OutOfRange)
	}
	require.Eventually(t, func() bool { n, _ := s.Cars(); return n == 31 }, 5*time.Second, 5*time.Millisecond)
	settle()
	assert.Equal(t, wire.LimitKmh(31), get(t, fd))
}

// TestClientSeesDrops checks the client's drop detection: a stopped server, and an address
// nothing answers.
func TestClientSeesDrops(t *testing.T) {
	p := newPair(t)
	_, err := SetTxChecksum(p.client.NS, p.client.Peer, false)
	require.NoError(t, err)
	s := p.start(t, EBPF, 0)
	cfg := bench.SpeedLimitResponseConfig{Clients: 3, Requests: 20, Timeout: bench.Duration(100 * time.Millisecond)}
	samples, err := bench.SpeedLimitResponse(context.Background(), p.endpoints(), cfg)
	require.NoError(t, err)
	assert.Zero(t, bench.SummarizeSpeedLimit(samples).Timeouts)
	require.NoError(t, s.Close())
	assertDetached(t, p)

	samples, err = bench.SpeedLimitResponse(context.Background(), p.endpoints(), cfg)
	require.NoError(t, err)
	sum := bench.SummarizeSpeedLimit(samples)
	assert.Equal(t, 60, sum.Timeouts, "a stopped server answers nothing (port unreachable)")
	assert.Zero(t, sum.Requests)

	ep := p.endpoints()
	ep.Target = netip.MustParseAddr("10.18.0.250") // on the subnet, but nobody there
	cfg.Requests = 2
	samples, err = bench.SpeedLimitResponse(context.Background(), ep, cfg)
	require.NoError(t, err)
	assert.Equal(t, 6, bench.SummarizeSpeedLimit(samples).Timeouts)
	for _, x := range samples {
		assert.NotEqual(t, stats.ResponseTime, x.Metric)
	}

	dp, err := bench.SpeedLimitDropPoint(context.Background(), p.endpoints(),
		bench.SpeedLimitDropPointConfig{Start: 2, Max: 5, Requests: 5, Timeout: bench.Duration(50 * time.Millisecond), Pause: bench.Duration(time.Millisecond)})
	require.NoError(t, err)
	last := dp[len(dp)-1]
	assert.Equal(t, stats.DropPoint, last.Metric)
	assert.Equal(t, 1.0, last.Value, "the first start dropped: one client less")
}

// assertDetached checks that no XDP program is left on either end of the server's veth pair.
func assertDetached(t *testing.T, p pair) {
	t.Helper()
	for _, at := range []struct {
		ns    *netsetup.Namespace
		iface string
	}{{p.server.NS, p.server.Peer}, {p.node.NS, p.server.Veth}} {
		h, err := at.ns.Netlink()
		require.NoError(t, err)
		l, err := h.LinkByName(at.iface)
		h.Close()
		require.NoError(t, err)
		if x := l.Attrs().Xdp; x != nil {
			assert.False(t, x.Attached, "%s has no XDP program", at.iface)
		}
	}
}

func TestCloseDetaches(t *testing.T) {
	p := newPair(t)
	for _, mode := range []Mode{Mixed, EBPF} {
		s := p.start(t, mode, 0)
		h, err := p.server.NS.Netlink()
		require.NoError(t, err)
		l, err := h.LinkByName(p.server.Peer)
		h.Close()
		require.NoError(t, err)
		require.NotNil(t, l.Attrs().Xdp)
		assert.True(t, l.Attrs().Xdp.Attached)
		require.NoError(t, s.Close())
		require.NoError(t, s.Close(), "Close is idempotent")
		assertDetached(t, p)
	}
}

func TestGenericMode(t *testing.T) {
	p := newPair(t)
	_, err := SetTxChecksum(p.client.NS, p.client.Peer, false)
	require.NoError(t, err)
	s, err := StartServer(ServerConfig{Mode: EBPF, NS: p.server.NS, Iface: p.server.Peer, XDP: XDPGeneric})
	require.NoError(t, err)
	defer s.Close()
	assert.Equal(t, XDPGeneric, s.XDPMode())
	fd := p.dial(t, p.server.NSIP)
	assert.Equal(t, uint32(120), get(t, fd))

	_, err = StartServer(ServerConfig{Mode: EBPF, Port: 5301, NS: p.server.NS, Iface: p.server.Peer, XDP: XDPNative})
	assert.ErrorContains(t, err, "needs the peer interface")
}

func TestServerConfigErrors(t *testing.T) {
	_, err := StartServer(ServerConfig{Mode: "kernel"})
	assert.ErrorContains(t, err, `unknown speed-limit server mode "kernel": choose userspace, mixed, ebpf`)
	assert.ErrorContains(t, err, "no namespace")
	_, err = StartServer(ServerConfig{Mode: Mixed, NS: bench.Current{}})
	assert.ErrorContains(t, err, "needs the interface")
	_, err = ParseXDPMode("offload")
	assert.ErrorContains(t, err, "choose auto, native or generic")
}
