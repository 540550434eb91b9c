package netsetup_test

import (
	"fmt"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/edgebpf/edgebpf/internal/testenv"
	"github.com/edgebpf/edgebpf/netsetup"
)

func TestClusterRegistriesHoldEveryInstance(t *testing.T) {
	before := hostLinks(t)
	c := testenv.Cluster(t, netsetup.ClusterConfig{}, "client@0", "server@1", "server@0")
	assert.Equal(t, before, hostLinks(t), "the host namespace's links must not change")
	require.Len(t, c.Workers, 2)
	w0, w1 := c.Workers[0], c.Workers[1]
	assert.Equal(t, "c-w0", w0.Name())
	assert.Equal(t, netip.MustParsePrefix("10.18.1.0/24"), w1.Config().Subnet)

	u0, ok := w0.Underlay()
	require.True(t, ok)
	u1, _ := w1.Underlay()
	assert.Equal(t, netip.MustParseAddr("10.17.0.1"), u0.IP)
	assert.Equal(t, netip.MustParseAddr("10.17.0.2"), u1.IP)
	require.Len(t, u0.Peers, 1)
	assert.Equal(t, netsetup.Peer{Name: "c-w1", IP: u1.IP, Subnet: w1.Config().Subnet}, u0.Peers[0])

	// One service IP cluster-wide; both workers know all three instances, each its own as
	// local and the other's as remote with the hosting worker's node IP.
	s0, _ := w0.Registry.Service("server")
	s1, _ := w1.Registry.Service("server")
	assert.Equal(t, s0.IP, s1.IP)
	for _, w := range c.Workers {
		ins := w.Registry.Instances("server")
		require.Len(t, ins, 2, w.Name())
		for _, in := range ins {
			assert.Equal(t, in.Node != w.Name(), in.Remote(), "%s on %s", in.Name, w.Name())
			if in.Remote() {
				assert.Nil(t, in.NS)
				assert.Empty(t, in.Veth)
			}
			hostU, _ := c.Workers[map[string]int{"c-w0": 0, "c-w1": 1}[in.Node]].Underlay()
			assert.Equal(t, hostU.IP, in.NodeIP)
		}
	}
	srv, ok := w1.Instance("server", 0)
	require.True(t, ok, "server-0 is local to worker 1")
	_, ok = w0.Instance("server", 0)
	assert.False(t, ok, "Instance finds only local instances")
	assert.True(t, w1.Config().Subnet.Contains(srv.NSIP))
	assert.NotEqual(t, srv.InstanceIP, w0.Registry.Instances("server")[1].InstanceIP, "instance IPs are unique cluster-wide")

	// The underlay carries packets between node IPs; nothing routes the worker subnets.
	var rx *net.UDPConn
	require.NoError(t, w1.NS.Do(func() (err error) {
		rx, err = net.ListenUDP("udp4", &net.UDPAddr{IP: u1.IP.AsSlice(), Port: netsetup.TunnelPort})
		return err
	}))
	defer rx.Close()
	require.NoError(t, w0.NS.Do(func() error {
		tx, err := net.DialUDP("udp4", nil, rx.LocalAddr().(*net.UDPAddr))
		if err != nil {
			return err
		}
		defer tx.Close()
		raw, _ := tx.SyscallConn()
		_ = raw.Control(func(fd uintptr) {
			_ = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_MTU_DISCOVER, unix.IP_PMTUDISC_DO)
		})
		_, err = tx.Write(make([]byte, 1472))
		return err
	}))
	require.NoError(t, rx.SetReadDeadline(time.Now().Add(2*time.Second)))
	n, err := rx.Read(make([]byte, 2000))
	require.NoError(t, err, "a 1500-byte packet crosses the underlay unfragmented")
	assert.Equal(t, 1472, n)
	err = w0.NS.Do(func() error {
		tx, err := net.Dial("udp4", netip.AddrPortFrom(srv.NSIP, 9).String())
		if err == nil {
			_, err = tx.Write([]byte("x"))
			tx.Close()
		}
		return err
	})
	assert.Error(t, err, "no route between worker subnets unless a data plane installs one")

	// Removal: the other worker forgets the instance too; the status lists remote instances.
	st := w0.Status()
	assert.Equal(t, u0.IP.String(), st.UnderlayIP)
	require.NoError(t, c.RemoveInstance(srv))
	assert.Len(t, w0.Registry.Instances("server"), 1)
	assert.Len(t, w1.Registry.Instances("server"), 1)
	_, err = w0.AddService("other")
	assert.ErrorContains(t, err, "through the cluster")
	_, err = c.AddInstance("server", 2)
	assert.ErrorContains(t, err, "worker 2 does not exist")
}

func TestClusterShapesAndValidates(t *testing.T) {
	c := testenv.Cluster(t, netsetup.ClusterConfig{Name: "s", Workers: 3, RateBits: 100e6})
	require.Len(t, c.Workers, 3)
	h, err := c.Workers[2].NS.Netlink()
	require.NoError(t, err)
	defer h.Close()
	link, err := h.LinkByName(netsetup.UnderlayLink)
	require.NoError(t, err)
	assert.Equal(t, 1500, link.Attrs().MTU)
	qs, err := h.QdiscList(link)
	require.NoError(t, err)
	var tbf *netlink.Tbf
	for _, q := range qs {
		if x, ok := q.(*netlink.Tbf); ok {
			tbf = x
		}
	}
	require.NotNil(t, tbf, "a tbf shapes the worker's underlay egress")
	assert.Equal(t, uint64(100e6/8), tbf.Rate)

	for _, cfg := range []netsetup.ClusterConfig{
		{Workers: 65},
		{MTU: 1480},
		{Underlay: netip.MustParsePrefix("10.17.0.0/30"), Workers: 3},
		{Underlay: netip.MustParsePrefix("10.30.0.0/24")},
		{Name: "Bad"},
	} {
		assert.Error(t, cfg.Validate(), "%+v", cfg)
	}
}

// TestClusterUnderlayForwardsOnReturn: when NewCluster returns, the underlay bridge forwards
// on every worker's port, so a data plane's first datagram to another worker is not held up
// by a lost ARP request. Before, worker 0's port (its veth's two ends share an index, so the
// kernel batches its carrier event) forwarded only about a second later, and a first SYN
// through a tunnel needed a retransmission, sometimes two (the dial timed out).
func TestClusterUnderlayForwardsOnReturn(t *testing.T) {
	c := testenv.Cluster(t, netsetup.ClusterConfig{Workers: 3})
	states, err := netsetup.BridgePortStates(c.Underlay)
	require.NoError(t, err)
	h, err := c.Underlay.Netlink()
	require.NoError(t, err)
	defer h.Close()
	for i := range c.Workers {
		l, err := h.LinkByName(fmt.Sprintf("%su-%d", netsetup.LinkPrefix, i))
		require.NoError(t, err)
		assert.Equal(t, uint8(netsetup.BRForwarding), states[l.Attrs().Index], "worker %d's underlay port forwards", i)
	}
}
