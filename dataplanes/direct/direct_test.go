package direct_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/vishvananda/netlink"

	"github.com/edgebpf/edgebpf/dataplanes/direct"
	"github.com/edgebpf/edgebpf/dataplanes/proxytest"
	"github.com/edgebpf/edgebpf/internal/testenv"
	"github.com/edgebpf/edgebpf/netsetup"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// TestAcrossWorkers: a client on worker 0 reaches the server's namespace IP on worker 1 over
// TCP and UDP, routed over the underlay, and the server sees the client's namespace IP.
func TestAcrossWorkers(t *testing.T) {
	c := testenv.Cluster(t, netsetup.ClusterConfig{}, "client@0", "server@1")
	dps := proxytest.DeployCluster(t, c, func() proxytest.DataPlane { return direct.New() })
	client, _ := c.Workers[0].Instance("client", 0)
	server, ok := c.Workers[1].Instance("server", 0)
	require.True(t, ok)
	proxytest.Serve(t, server)
	svc, _ := c.Workers[0].Registry.Service("server")
	target, err := dps[0].Target(svc)
	require.NoError(t, err)
	assert.Equal(t, server.NSIP, target, "the client addresses the remote server's namespace IP")

	a, err := proxytest.AskTCP(client.NS, target)
	require.NoError(t, err)
	assert.Equal(t, proxytest.Answer{Instance: "server-0", Seen: client.NSIP.String()}, a)
	a, err = proxytest.AskUDP(client.NS, target, 1422) // a full 1450-byte packet
	require.NoError(t, err)
	assert.Equal(t, proxytest.Answer{Instance: "server-0", Seen: client.NSIP.String()}, a)
	assert.Contains(t, dps[0].Settings()["cross_worker"], "without a tunnel")
}

// TestCloseRestoresWorker: Close takes the peer routes away and puts forwarding back as it
// was, and only a worker gets them.
func TestCloseRestoresWorker(t *testing.T) {
	c := testenv.Cluster(t, netsetup.ClusterConfig{}, "client@0", "server@1")
	w := c.Workers[0]
	routesBefore, fwdBefore := routes(t, w), forwarding(t, w)
	dp := direct.New()
	require.NoError(t, dp.Deploy(context.Background(), w))
	assert.Contains(t, routes(t, w), "10.18.1.0/24 via 10.17.0.2 dev "+netsetup.UnderlayLink)
	assert.Equal(t, "1", forwarding(t, w))
	assert.ErrorContains(t, dp.Deploy(context.Background(), w), "already deployed")
	require.NoError(t, dp.Close())
	assert.Equal(t, routesBefore, routes(t, w), "Close removes the peer routes")
	assert.Equal(t, fwdBefore, forwarding(t, w), "Close restores ip_forward")
	require.NoError(t, dp.Close(), "Close is idempotent")

	// A second data plane routing the same subnets is refused with a reason, and leaves
	// nothing.
	first := direct.New()
	require.NoError(t, first.Deploy(context.Background(), w))
	t.Cleanup(func() { assert.NoError(t, first.Close()) })
	withFirst := routes(t, w)
	assert.ErrorContains(t, direct.New().Deploy(context.Background(), w), "already exists")
	assert.Equal(t, withFirst, routes(t, w))

	node := testenv.Node(t, "server")
	standalone := direct.New()
	require.NoError(t, standalone.Deploy(context.Background(), node))
	assert.NotContains(t, standalone.Settings(), "cross_worker")
	assert.Equal(t, "0", forwarding(t, node), "a standalone node needs no forwarding")
	require.NoError(t, standalone.Close())
}

func routes(t *testing.T, n *netsetup.Node) []string {
	t.Helper()
	h, err := n.NS.Netlink()
	require.NoError(t, err)
	defer h.Close()
	rs, err := h.RouteList(nil, netlink.FAMILY_V4)
	require.NoError(t, err)
	var out []string
	for _, r := range rs {
		link, err := h.LinkByIndex(r.LinkIndex)
		require.NoError(t, err)
		s := r.Dst.String()
		if r.Gw != nil {
			s += " via " + r.Gw.String()
		}
		out = append(out, fmt.Sprintf("%s dev %s", s, link.Attrs().Name))
	}
	return out
}

func forwarding(t *testing.T, n *netsetup.Node) string {
	t.Helper()
	v, err := n.NS.ReadSysctl("ipv4/ip_forward")
	require.NoError(t, err)
	return v
}

// TestClusterClosedFirst: a data plane closed after its cluster has gone closes without an
// error.
func TestClusterClosedFirst(t *testing.T) {
	c := testenv.Cluster(t, netsetup.ClusterConfig{}, "client@0", "server@1")
	dp := direct.New()
	require.NoError(t, dp.Deploy(context.Background(), c.Workers[0]))
	require.NoError(t, c.Close())
	assert.NoError(t, dp.Close())
}
