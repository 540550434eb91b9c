package ebpf_test

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/edgebpf/edgebpf/dataplanes/ebpf"
	"github.com/edgebpf/edgebpf/dataplanes/ebpf/modules/proxy"
	"github.com/edgebpf/edgebpf/internal/testenv"
	"github.com/edgebpf/edgebpf/netsetup"
)

const (
	gsoPort  = 7402
	gsoSize  = 1400 // payload bytes per datagram
	gsoSegs  = 20   // datagrams per send
	gsoSends = 10
)

// TestUDPGSOThroughTheTunnel sends bursts of UDP GSO buffers (UDP_SEGMENT: gsoSegs datagrams
// of gsoSize bytes per send) from an instance on worker 0 to a service on worker 1 through
// the eBPF tunnel: every datagram arrives, with its size and contents.
func TestUDPGSOThroughTheTunnel(t *testing.T) {
	testenv.RequirePrivileged(t)
	c := testenv.Cluster(t, netsetup.ClusterConfig{}, "client@0", "server@1")
	dps := deployCluster(t, c)
	client, ok := c.Workers[0].Instance("client", 0)
	require.True(t, ok)
	server, ok := c.Workers[1].Instance("server", 0)
	require.True(t, ok)
	svc, ok := c.Workers[0].Registry.Service(server.Service)
	require.True(t, ok)

	seen := gsoBursts(t, client, server, svc.IP, gsoSends)
	assert.Len(t, seen, gsoSends*gsoSegs, "every datagram of the GSO sends arrives")
	for tag, n := range seen {
		assert.Equal(t, 1, n, "datagram %d of send %d arrives once", tag[1], tag[0])
	}
	st := tunnelStats(t, dps[1])
	assert.EqualValues(t, gsoSends*gsoSegs, st.Delivered, "worker 1 delivered each datagram: %+v", st)
	px := proxyStats(t, dps[0])
	assert.Zero(t, px.TooBig+px.TunnelTooBig+px.TunnelErrors, "worker 0 dropped nothing: %+v", px)
}

// TestUDPGSOFirstSendInstalls sends UDP GSO buffers from one instance to a service on the same
// node: the flow's first send, too long to go up to the control plane whole, is dropped and
// counted but installs the service, and every later send arrives whole.
func TestUDPGSOFirstSendInstalls(t *testing.T) {
	testenv.RequirePrivileged(t)
	node := testenv.Node(t, "client", "server")
	dp := ebpf.New()
	require.NoError(t, dp.Deploy(context.Background(), node))
	t.Cleanup(func() { assert.NoError(t, dp.Close()) })
	client, ok := node.Instance("client", 0)
	require.True(t, ok)
	server, ok := node.Instance("server", 0)
	require.True(t, ok)
	svc, ok := node.Registry.Service("server")
	require.True(t, ok)

	seen := gsoBursts(t, client, server, svc.IP, gsoSends)
	for k := 0; k < gsoSegs; k++ {
		assert.Zero(t, seen[[2]byte{0, byte(k)}], "datagram %d of the first send is dropped", k)
	}
	for i := 1; i < gsoSends; i++ {
		for k := 0; k < gsoSegs; k++ {
			assert.Equal(t, 1, seen[[2]byte{byte(i), byte(k)}], "datagram %d of send %d arrives once", k, i)
		}
	}
	px := proxyStats(t, dp)
	assert.EqualValues(t, 1, px.TooBig, "the first send counted too big: %+v", px)
	assert.EqualValues(t, 1, px.ControlPlane.Upcalls, "and sent up, cut: %+v", px)
	assert.Zero(t, px.ControlPlane.Reinject, "but not put back: %+v", px)
}

// gsoBursts sends sends UDP GSO buffers of gsoSegs datagrams of gsoSize bytes from client to
// ip:gsoPort, received by server, and counts the datagrams that arrive by their tag (send,
// place in it); each one's size and contents are checked. The first datagram of a flow may go
// up to the control plane and be put back after the others, so order is not checked. Each
// send's datagrams are awaited before the next (3 s each at most: a lost one ends the wait).
func gsoBursts(t *testing.T, client, server *netsetup.Instance, ip netip.Addr, sends int) map[[2]byte]int {
	var pc net.PacketConn
	require.NoError(t, server.NS.Do(func() (err error) {
		pc, err = net.ListenPacket("udp4", fmt.Sprintf(":%d", gsoPort))
		return err
	}))
	defer pc.Close()
	var conn *net.UDPConn
	require.NoError(t, client.NS.Do(func() error {
		d, err := net.Dial("udp4", netip.AddrPortFrom(ip, gsoPort).String())
		if err != nil {
			return err
		}
		conn = d.(*net.UDPConn)
		return setGSO(conn, gsoSize)
	}))
	defer conn.Close()

	buf := make([]byte, gsoSize*gsoSegs)
	got := make([]byte, 65536)
	seen := map[[2]byte]int{}
	for i := 0; i < sends; i++ {
		for k := 0; k < gsoSegs; k++ {
			d := buf[k*gsoSize : (k+1)*gsoSize]
			copy(d, pattern(gsoSize))
			d[0], d[1] = byte(i), byte(k)
		}
		_, err := conn.Write(buf)
		require.NoError(t, err)
		for k := 0; k < gsoSegs; k++ {
			_ = pc.SetReadDeadline(time.Now().Add(3 * time.Second))
			n, _, err := pc.ReadFrom(got)
			if err != nil {
				break
			}
			want := pattern(gsoSize)
			want[0], want[1] = got[0], got[1]
			assert.True(t, n == gsoSize && string(got[:n]) == string(want), "a datagram of %d bytes, unchanged", n)
			seen[[2]byte{got[0], got[1]}]++
		}
	}
	return seen
}

// setGSO sets UDP_SEGMENT on the socket: the kernel splits every write into datagrams of
// size bytes.
func setGSO(conn *net.UDPConn, size int) error {
	rc, err := conn.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_UDP, unix.UDP_SEGMENT, size)
	}); err != nil {
		return err
	}
	return serr
}

func proxyStats(t *testing.T, dp *ebpf.DataPlane) proxy.Stats {
	st, err := deployed[*proxy.Proxy](t, dp, "proxy").Stats()
	require.NoError(t, err)
	return st
}
