package nftables_test

import (
	"context"
	"fmt"
	"slices"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/edgebpf/edgebpf/dataplanes/nftables"
	"github.com/edgebpf/edgebpf/dataplanes/proxytest"
	"github.com/edgebpf/edgebpf/internal/testenv"
	"github.com/edgebpf/edgebpf/netsetup"
)

func newDP() proxytest.DataPlane { return nftables.New() }

// TestCluster: TCP and UDP through the service IP across workers over the kernel's VXLAN,
// the server seeing the client's instance IP, and a service spread over both workers.
func TestCluster(t *testing.T) {
	proxytest.RunCluster(t, newDP)
}

// TestVXLANShape: each worker has flannel's VXLAN device and, per peer, the route, neighbour
// and FDB entry; a remote instance's instance IP is routed to its worker, and the route goes
// with the instance.
func TestVXLANShape(t *testing.T) {
	c := testenv.Cluster(t, netsetup.ClusterConfig{}, "client@0", "server@1")
	dps := proxytest.DeployCluster(t, c, newDP)
	w0 := c.Workers[0]
	u1, _ := c.Workers[1].Underlay()
	vtep1, mac1 := nftables.VTEP(c.Workers[1].Config().Subnet, u1.IP)

	h, err := w0.NS.Netlink()
	require.NoError(t, err)
	defer h.Close()
	link, err := h.LinkByName(nftables.VXLANDevice)
	require.NoError(t, err)
	vx, ok := link.(*netlink.Vxlan)
	require.True(t, ok, "%T", link)
	u0, _ := w0.Underlay()
	assert.Equal(t, 1, vx.VxlanId)
	assert.Equal(t, 4789, vx.Port)
	assert.Equal(t, 1450, vx.MTU)
	assert.False(t, vx.Learning)
	assert.Equal(t, u0.IP.String(), vx.SrcAddr.String())
	assert.Equal(t, u0.Index, vx.VtepDevIndex)

	neighs, err := h.NeighList(vx.Index, unix.AF_INET)
	require.NoError(t, err)
	assert.True(t, slices.ContainsFunc(neighs, func(n netlink.Neigh) bool {
		return n.IP.String() == vtep1.String() && n.HardwareAddr.String() == mac1.String() && n.State == netlink.NUD_PERMANENT
	}), "neighbour %s -> %s in %v", vtep1, mac1, neighs)
	fdb, err := h.NeighList(vx.Index, unix.AF_BRIDGE)
	require.NoError(t, err)
	assert.True(t, slices.ContainsFunc(fdb, func(n netlink.Neigh) bool {
		return n.IP.String() == u1.IP.String() && n.HardwareAddr.String() == mac1.String()
	}), "fdb %s -> %s in %v", mac1, u1.IP, fdb)

	srv := w0.Registry.Instances("server")[0]
	assert.Contains(t, routes(t, w0), fmt.Sprintf("10.18.1.0/24 via %s dev %s onlink", vtep1, nftables.VXLANDevice))
	assert.Contains(t, routes(t, w0), fmt.Sprintf("%s/32 via %s dev %s onlink", srv.InstanceIP, vtep1, nftables.VXLANDevice))
	local, _ := c.Workers[1].Instance("server", 0)
	require.NoError(t, c.RemoveInstance(local))
	assert.NotContains(t, routes(t, w0), fmt.Sprintf("%s/32 via %s dev %s onlink", srv.InstanceIP, vtep1, nftables.VXLANDevice))
	assert.Contains(t, dps[0].Settings()["cross_worker"], "VNI 1, dstport 4789")
}

// TestClusterCloseLeavesNothing: Close takes the VXLAN device, its routes, neighbours and
// FDB entries, the remote instances' routes and the table away, and restores forwarding.
func TestClusterCloseLeavesNothing(t *testing.T) {
	c := testenv.Cluster(t, netsetup.ClusterConfig{}, "client@0", "server@1")
	w := c.Workers[1]
	linksBefore, routesBefore := links(t, w), routes(t, w)
	fwdBefore, err := w.NS.ReadSysctl("ipv4/ip_forward")
	require.NoError(t, err)
	dp := nftables.New()
	require.NoError(t, dp.Deploy(context.Background(), w))
	assert.Contains(t, links(t, w), nftables.VXLANDevice)
	require.NoError(t, dp.Close())
	assert.Equal(t, linksBefore, links(t, w))
	assert.Equal(t, routesBefore, routes(t, w))
	assert.False(t, hasTable(t, w.NS))
	fwd, err := w.NS.ReadSysctl("ipv4/ip_forward")
	require.NoError(t, err)
	assert.Equal(t, fwdBefore, fwd)
}

// TestClusterOverlayMTUTooLarge: an overlay MTU VXLAN cannot carry on the underlay is refused
// with the largest that fits, and nothing is left.
func TestClusterOverlayMTUTooLarge(t *testing.T) {
	c := testenv.Cluster(t, netsetup.ClusterConfig{MTU: 1472})
	w := c.Workers[0]
	before := links(t, w)
	err := nftables.New().Deploy(context.Background(), w)
	assert.ErrorContains(t, err, "at most 1450")
	assert.Equal(t, before, links(t, w))
	assert.False(t, hasTable(t, w.NS))
}

func links(t *testing.T, n *netsetup.Node) []string {
	t.Helper()
	h, err := n.NS.Netlink()
	require.NoError(t, err)
	defer h.Close()
	ls, err := h.LinkList()
	require.NoError(t, err)
	var out []string
	for _, l := range ls {
		out = append(out, l.Attrs().Name)
	}
	return out
}

func routes(t *testing.T, n *netsetup.Node) []string {
	t.Helper()
	h, err := n.NS.Netlink()
	require.NoError(t, err)
	defer h.Close()
	rs, err := h.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Table: unix.RT_TABLE_UNSPEC}, netlink.RT_FILTER_TABLE)
	require.NoError(t, err)
	var out []string
	for _, r := range rs {
		link, err := h.LinkByIndex(r.LinkIndex)
		require.NoError(t, err)
		s := r.Dst.String()
		if r.Gw != nil {
			s += " via " + r.Gw.String()
		}
		s += " dev " + link.Attrs().Name
		if r.Flags&int(netlink.FLAG_ONLINK) != 0 {
			s += " onlink"
		}
		out = append(out, s)
	}
	return out
}

// TestClusterClosedFirst: a data plane closed after its cluster has gone closes without an
// error.
func TestClusterClosedFirst(t *testing.T) {
	c := testenv.Cluster(t, netsetup.ClusterConfig{}, "client@0", "server@1")
	dp := nftables.New()
	require.NoError(t, dp.Deploy(context.Background(), c.Workers[0]))
	require.NoError(t, c.Close())
	assert.NoError(t, dp.Close())
}
