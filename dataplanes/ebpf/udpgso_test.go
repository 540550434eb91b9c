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
	var dps []*ebpf.DataPlane
	for _, w := range c.Workers {
		dp := ebpf.New()
		require.NoError(t, dp.Deploy(context.Background(), w))
		t.Cleanup(func() { assert.NoError(t, dp.Close()) })
		dps = append(dps, dp)
	}
	client, ok := c.Workers[0].Instance("client", 0)
	require.True(t, ok)
	server, ok := c.Workers[1].Instance("server", 0)
	require.True(t, ok)
	svc, ok := c.Workers[0].Registry.Service(server.Service)
	require.True(t, ok)

	var pc net.PacketConn
	require.NoError(t, server.NS.Do(func() (err error) {
		pc, err = net.ListenPacket("udp4", fmt.Sprintf(":%d", gsoPort))
		return err
	}))
	defer pc.Close()

	var conn *net.UDPConn
	require.NoError(t, client.NS.Do(func() error {
		d, err := net.Dial("udp4", netip.AddrPortFrom(svc.IP, gsoPort).String())
		if err != nil {
			return err
		}
		conn = d.(*net.UDPConn)
		return setGSO(conn, gsoSize)
	}))
	defer conn.Close()

	// Each datagram names its send and its place in it; the rest is a pattern. The first
	// datagram of the flow goes up to the control plane and is put back after the others,
	// so the test counts datagrams, not their order.
	buf := make([]byte, gsoSize*gsoSegs)
	got := make([]byte, 65536)
	seen := map[[2]byte]int{}
	for i := 0; i < gsoSends; i++ {
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
	assert.Len(t, seen, gsoSends*gsoSegs, "every datagram of the GSO sends arrives")
	for tag, n := range seen {
		assert.Equal(t, 1, n, "datagram %d of send %d arrives once", tag[1], tag[0])
	}
	st := tunnelStats(t, dps[1])
	assert.EqualValues(t, gsoSends*gsoSegs, st.Delivered, "worker 1 delivered each datagram: %+v", st)
	px := proxyStats(t, dps[0])
	assert.Zero(t, px.TooBig+px.TunnelTooBig+px.TunnelErrors, "worker 0 dropped nothing: %+v", px)
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
	for _, inf := range dp.Manager().List() {
		if inf.Name == "proxy" {
			mod, ok := dp.Manager().Module(inf.ID)
			require.True(t, ok)
			st, err := mod.(*proxy.Proxy).Stats()
			require.NoError(t, err)
			return st
		}
	}
	t.Fatal("no proxy module deployed")
	return proxy.Stats{}
}
