package nftables_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	gnft "github.com/google/nftables"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/edgebpf/edgebpf/dataplanes/nftables"
	"github.com/edgebpf/edgebpf/dataplanes/proxytest"
	"github.com/edgebpf/edgebpf/internal/testenv"
	"github.com/edgebpf/edgebpf/netsetup"
)

func TestMain(m *testing.M) { testenv.Main(m) }

func TestProxy(t *testing.T) {
	proxytest.Run(t, func() proxytest.DataPlane { return nftables.New() })
}

// hasTable reports whether the namespace (nil: the test's own) holds the data plane's table.
func hasTable(t *testing.T, ns *netsetup.Namespace) bool {
	t.Helper()
	var opts []gnft.ConnOption
	if ns != nil {
		opts = append(opts, gnft.WithNetNSFd(int(ns.Handle())))
	}
	c, err := gnft.New(opts...)
	require.NoError(t, err)
	tables, err := c.ListTablesOfFamily(gnft.TableFamilyIPv4)
	require.NoError(t, err)
	for _, tb := range tables {
		if tb.Name == nftables.TableName {
			return true
		}
	}
	return false
}

func TestTableOnlyInNodeNamespaceAndRemovedByClose(t *testing.T) {
	node := testenv.Node(t, "server")
	dp := nftables.New()
	require.NoError(t, dp.Deploy(context.Background(), node))
	assert.True(t, hasTable(t, node.NS), "table in the node namespace")
	assert.False(t, hasTable(t, nil), "no table in the test's own namespace")
	require.NoError(t, dp.Close())
	assert.False(t, hasTable(t, node.NS), "Close deletes the table")
	require.NoError(t, dp.Close(), "Close is idempotent")
	// A closed data plane no longer follows the registry.
	_, err := node.AddService("later")
	require.NoError(t, err)
	assert.False(t, hasTable(t, node.NS))
}

func TestDeployTwiceIsAnError(t *testing.T) {
	node := testenv.Node(t)
	dp := nftables.New()
	require.NoError(t, dp.Deploy(context.Background(), node))
	t.Cleanup(func() { assert.NoError(t, dp.Close()) })
	assert.ErrorContains(t, dp.Deploy(context.Background(), node), "already deployed")
}

func TestTargetIsServiceIP(t *testing.T) {
	svc := netsetup.Service{Name: "s", IP: netsetup.DefaultServiceRange.Addr().Next()}
	ip, err := nftables.New().Target(svc)
	require.NoError(t, err)
	assert.Equal(t, svc.IP, ip)
	_, err = nftables.New().Target(netsetup.Service{Name: "s"})
	assert.Error(t, err)
}

// TestHalfClosedConnections: connections whose client shut down its write side complete when
// the server answers seconds later, on a service of two instances (issue 15, finding 7, which
// the eBPF proxy failed; this data plane passed it then and must keep passing it).
func TestHalfClosedConnections(t *testing.T) {
	testenv.RequirePrivileged(t)
	for _, conns := range []int{3, 6} {
		t.Run(fmt.Sprintf("%d connections", conns), func(t *testing.T) {
			proxytest.HalfClosed(t, func() proxytest.DataPlane { return nftables.New() }, conns, 3*time.Second)
		})
	}
}
