package netsetup_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/edgebpf/edgebpf/internal/testenv"
	"github.com/edgebpf/edgebpf/netsetup"
)

// twoHosts builds two stand-in "hosts": namespaces joined by a veth "lan0" (the experiment
// LAN), each end with the host's own address 192.168.77.1 and .2/24.
func twoHosts(t *testing.T, sess *netsetup.Session, mtu int) (a, b *netsetup.Namespace) {
	t.Helper()
	a, err := sess.NewNamespace("host-a")
	require.NoError(t, err)
	b, err = sess.NewNamespace("host-b")
	require.NoError(t, err)
	for _, ns := range []*netsetup.Namespace{a, b} {
		// No IPv6 link-local addresses and routes appearing while the test compares states.
		require.NoError(t, ns.Sysctl("ipv6/conf/default/disable_ipv6", "1"))
	}
	ha, err := a.Netlink()
	require.NoError(t, err)
	defer ha.Close()
	hb, err := b.Netlink()
	require.NoError(t, err)
	defer hb.Close()
	require.NoError(t, ha.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "lan0", MTU: mtu},
		PeerName: "lan0", PeerMTU: uint32(mtu), PeerNamespace: netlink.NsFd(b.Handle())}))
	for i, h := range []*netlink.Handle{ha, hb} {
		l, err := h.LinkByName("lan0")
		require.NoError(t, err)
		require.NoError(t, h.AddrAdd(l, &netlink.Addr{IPNet: &net.IPNet{IP: net.IPv4(192, 168, 77, byte(i+1)), Mask: net.CIDRMask(24, 32)}}))
		require.NoError(t, h.LinkSetUp(l))
	}
	for _, h := range []*netlink.Handle{ha, hb} {
		require.Eventually(t, func() bool {
			l, err := h.LinkByName("lan0")
			return err == nil && l.Attrs().RawFlags&unix.IFF_RUNNING != 0
		}, 10*time.Second, 10*time.Millisecond, "the LAN's carrier comes up")
	}
	return a, b
}

func joinConfig(worker int, host *netsetup.Namespace) netsetup.JoinConfig {
	return netsetup.JoinConfig{
		Worker: worker, Device: "lan0", HostNS: host,
		UnderlayIP: netip.MustParsePrefix(fmt.Sprintf("192.168.77.%d/24", 101+worker)),
		NodeIPs:    []netip.Addr{netip.MustParseAddr("192.168.77.101"), netip.MustParseAddr("192.168.77.102")},
		Services:   []string{"client", "server"},
		Placement:  []netsetup.Placement{{Service: "client", Worker: 0}, {Service: "server", Worker: 1}, {Service: "server", Worker: 0}},
	}
}

// table lists a registry's instances with their addresses and nodes, local or not.
func table(n *netsetup.Node) []string {
	var out []string
	for _, s := range n.Registry.Services() {
		for _, in := range n.Registry.Instances(s.Name) {
			out = append(out, fmt.Sprintf("%s %s %s ns %s inst %s on %s %s", s.Name, s.IP, in.Name, in.NSIP, in.InstanceIP, in.Node, in.NodeIP))
		}
	}
	return out
}

func TestMembersOnTwoHostsShareOneTable(t *testing.T) {
	sess := testenv.Session(t)
	hostA, hostB := twoHosts(t, sess, 1500)
	beforeA, beforeB := testenv.NetState(t, hostA), testenv.NetState(t, hostB)

	var members []*netsetup.Member
	for i, host := range []*netsetup.Namespace{hostA, hostB} {
		m, err := netsetup.JoinCluster(sess, joinConfig(i, host))
		require.NoError(t, err)
		require.NoError(t, m.Populate())
		members = append(members, m)
	}
	a, b := members[0].Node, members[1].Node
	assert.Equal(t, "c-w0", a.Name())
	assert.Equal(t, netip.MustParsePrefix("10.18.1.0/24"), b.Config().Subnet)
	assert.Equal(t, table(a), table(b), "every member computes the same cluster-wide table")
	assert.Equal(t, []string{
		"client 10.30.0.1 client-0 ns 10.18.0.2 inst 10.30.0.3 on c-w0 192.168.77.101",
		"server 10.30.0.2 server-0 ns 10.18.1.2 inst 10.30.0.4 on c-w1 192.168.77.102",
		"server 10.30.0.2 server-1 ns 10.18.0.3 inst 10.30.0.5 on c-w0 192.168.77.101",
	}, table(a))
	srv, ok := b.Instance("server", 0)
	require.True(t, ok, "server-0 is local to worker 1")
	assert.NotNil(t, srv.NS)
	ua, _ := a.Underlay()
	assert.Equal(t, []netsetup.Peer{{Name: "c-w1", IP: netip.MustParseAddr("192.168.77.102"), Subnet: netip.MustParsePrefix("10.18.1.0/24")}}, ua.Peers)
	assert.Equal(t, 1500, ua.MTU)

	// The hosts keep their links, addresses and routes: the macvlan child lives in the worker
	// namespace from its creation.
	assert.Equal(t, beforeA, testenv.NetState(t, hostA))
	assert.Equal(t, beforeB, testenv.NetState(t, hostB))

	for _, m := range members {
		require.NoError(t, m.ProbePeers(context.Background(), 10*time.Second))
	}

	// Routed across the underlay (what direct across workers installs): a UDP datagram from
	// client-0 on host A reaches server-0 on host B and its answer comes back.
	routeVia(t, a, b)
	routeVia(t, b, a)
	cl, _ := a.Instance("client", 0)
	echoUDP(t, cl, srv)

	// The member goes with its namespace, and the macvlan child with it.
	wb := members[1].Node.NS.Name
	require.NoError(t, members[1].Close())
	_, err := os.Stat(filepath.Join("/run/netns", wb))
	assert.ErrorIs(t, err, os.ErrNotExist)
	assert.Equal(t, beforeB, testenv.NetState(t, hostB))
}

// routeVia routes the peer's subnet through its node IP and lets the worker forward.
func routeVia(t *testing.T, from, to *netsetup.Node) {
	t.Helper()
	u, _ := from.Underlay()
	ut, _ := to.Underlay()
	h, err := from.NS.Netlink()
	require.NoError(t, err)
	defer h.Close()
	dst := to.Config().Subnet
	require.NoError(t, h.RouteAdd(&netlink.Route{LinkIndex: u.Index, Dst: &net.IPNet{IP: dst.Addr().AsSlice(), Mask: net.CIDRMask(dst.Bits(), 32)}, Gw: ut.IP.AsSlice()}))
	require.NoError(t, from.NS.Sysctl("ipv4/ip_forward", "1"))
}

func echoUDP(t *testing.T, client, server *netsetup.Instance) {
	t.Helper()
	var srv *net.UDPConn
	require.NoError(t, server.NS.Do(func() (err error) {
		srv, err = net.ListenUDP("udp4", &net.UDPAddr{Port: 7007})
		return err
	}))
	defer srv.Close()
	go func() {
		buf := make([]byte, 64)
		n, from, err := srv.ReadFromUDP(buf)
		if err == nil {
			_, _ = srv.WriteToUDP(buf[:n], from)
		}
	}()
	var c net.Conn
	require.NoError(t, client.NS.Do(func() (err error) {
		c, err = net.Dial("udp4", netip.AddrPortFrom(server.NSIP, 7007).String())
		return err
	}))
	defer c.Close()
	_, err := c.Write([]byte("across"))
	require.NoError(t, err)
	require.NoError(t, c.SetReadDeadline(time.Now().Add(5*time.Second)))
	buf := make([]byte, 64)
	n, err := c.Read(buf)
	require.NoError(t, err, "the echo crosses the underlay both ways")
	assert.Equal(t, "across", string(buf[:n]))
}

func TestJoinRefusesBadInputBeforeCreatingAnything(t *testing.T) {
	sess := testenv.Session(t)
	hostA, _ := twoHosts(t, sess, 1400)
	ok := joinConfig(0, hostA)
	ok.Cluster.MTU = 1300
	mtu, err := ok.CheckDevice()
	require.NoError(t, err)
	assert.Equal(t, 1400, mtu)
	jumbo := ok
	jumbo.Cluster.MTU = 8972
	require.NoError(t, jumbo.Validate(), "the device's MTU is not known before CheckDevice")
	_, err = jumbo.CheckDevice()
	assert.ErrorContains(t, err, "has MTU 1400, less than the overlay's 8972 plus the tunnel's 28 bytes: raise its MTU or lower --mtu to 1372")

	for _, c := range []struct {
		edit func(*netsetup.JoinConfig)
		want string
	}{
		{func(c *netsetup.JoinConfig) { c.Worker = 2 }, "worker 2 does not exist"},
		{func(c *netsetup.JoinConfig) { c.NodeIPs[1] = netip.MustParseAddr("192.168.78.2") }, "not on the underlay 192.168.77.0/24"},
		{func(c *netsetup.JoinConfig) { c.NodeIPs[1] = netip.MustParseAddr("192.168.77.255") }, "broadcast address"},
		{func(c *netsetup.JoinConfig) { c.NodeIPs[1] = c.NodeIPs[0] }, "the same node IP"},
		{func(c *netsetup.JoinConfig) { c.Placement[1].Service = "srv" }, "names an unknown service"},
		{func(c *netsetup.JoinConfig) { c.Placement[1].Worker = 5 }, "names an unknown worker"},
		{func(c *netsetup.JoinConfig) { c.Services = []string{"a", "a"} }, "listed twice"},
		{func(c *netsetup.JoinConfig) { c.UnderlayIP = netip.MustParsePrefix("192.168.77.103/24") }, "not this host's underlay address"},
	} {
		cfg := joinConfig(0, hostA)
		cfg.Cluster.MTU = 1300
		cfg.NodeIPs = slices.Clone(cfg.NodeIPs)
		cfg.Placement = slices.Clone(cfg.Placement)
		c.edit(&cfg)
		assert.ErrorContains(t, cfg.Validate(), c.want)
		_, err := netsetup.JoinCluster(sess, cfg)
		assert.ErrorContains(t, err, c.want)
	}
	for _, c := range []struct {
		edit func(*netsetup.JoinConfig)
		want string
	}{
		{func(c *netsetup.JoinConfig) { c.Device = "eth9" }, `underlay interface "eth9" does not exist`},
		{func(c *netsetup.JoinConfig) { c.Cluster.MTU = 1450 }, "has MTU 1400, less than the overlay's 1450 plus the tunnel's 28 bytes"},
		{func(c *netsetup.JoinConfig) {
			c.UnderlayIP = netip.MustParsePrefix("192.168.77.1/24")
			c.NodeIPs[0] = c.UnderlayIP.Addr()
		}, "is this host's own address"},
		{func(c *netsetup.JoinConfig) { c.Device = "lo" }, "loopback"},
	} {
		cfg := joinConfig(0, hostA)
		cfg.Cluster.MTU = 1300
		cfg.NodeIPs = slices.Clone(cfg.NodeIPs)
		c.edit(&cfg)
		require.NoError(t, cfg.Validate())
		_, err := netsetup.JoinCluster(sess, cfg)
		assert.ErrorContains(t, err, c.want)
	}
	// Nothing was created: the session holds only the two host namespaces.
	assert.Len(t, sessionNamespaces(t, sess), 2)

	// A peer that never joins does not answer.
	m, err := netsetup.JoinCluster(sess, ok)
	require.NoError(t, err)
	err = m.ProbePeers(context.Background(), 300*time.Millisecond)
	assert.ErrorIs(t, err, netsetup.ErrPeerSilent)
	assert.ErrorContains(t, err, "c-w1 at 192.168.77.102")
	require.NoError(t, m.Close())

	// A down interface is refused too.
	h, err := hostA.Netlink()
	require.NoError(t, err)
	defer h.Close()
	l, err := h.LinkByName("lan0")
	require.NoError(t, err)
	require.NoError(t, h.LinkSetDown(l))
	_, err = ok.CheckDevice()
	assert.ErrorContains(t, err, "is down")
	assert.False(t, errors.Is(err, netsetup.ErrPeerSilent))
}

// sessionNamespaces reads the namespaces the session's record lists.
func sessionNamespaces(t *testing.T, sess *netsetup.Session) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(netsetup.StateDir, netsetup.Prefix+sess.ID()+".json"))
	require.NoError(t, err)
	var rec netsetup.Record
	require.NoError(t, json.Unmarshal(b, &rec))
	return rec.Namespaces
}
