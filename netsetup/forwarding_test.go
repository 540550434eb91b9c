package netsetup_test

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/edgebpf/edgebpf/internal/testenv"
)

// EnableForwarding sets forwarding and redirects in the node namespace only, and undo puts
// back exactly what was there, once.
func TestEnableForwardingSetsAndRestores(t *testing.T) {
	n := testenv.Node(t)
	keys := map[string]string{
		"ipv4/ip_forward":                           "1",
		"ipv4/conf/all/send_redirects":              "0",
		"ipv4/conf/default/send_redirects":          "0",
		"ipv4/conf/" + n.Bridge + "/send_redirects": "0",
	}
	read := func(key string) string {
		t.Helper()
		v, err := n.NS.ReadSysctl(key)
		require.NoError(t, err)
		return v
	}
	// A key that already has the wanted value is left as it is.
	require.NoError(t, n.NS.Sysctl("ipv4/conf/default/send_redirects", "0"))
	before := map[string]string{}
	for k := range keys {
		before[k] = read(k)
	}
	require.Equal(t, "0", before["ipv4/ip_forward"], "a fresh namespace does not forward")

	undo, err := n.EnableForwarding()
	require.NoError(t, err)
	for k, want := range keys {
		assert.Equal(t, want, read(k), k)
	}
	require.NoError(t, undo())
	for k, want := range before {
		assert.Equal(t, want, read(k), k)
	}
	// A second undo changes nothing, even after the namespace was changed again.
	require.NoError(t, n.NS.Sysctl("ipv4/ip_forward", "1"))
	require.NoError(t, undo())
	assert.Equal(t, "1", read("ipv4/ip_forward"))
}

// A failing setting unwinds those already made.
func TestEnableForwardingUnwindsOnFailure(t *testing.T) {
	n := testenv.Node(t)
	// Without the bridge its send_redirects key is missing: the last setting fails.
	h, err := n.NS.Netlink()
	require.NoError(t, err)
	defer h.Close()
	br, err := h.LinkByName(n.Bridge)
	require.NoError(t, err)
	require.NoError(t, h.LinkDel(br))

	_, err = n.EnableForwarding()
	require.Error(t, err)
	assert.Contains(t, err.Error(), n.Bridge)
	v, err := n.NS.ReadSysctl("ipv4/ip_forward")
	require.NoError(t, err)
	assert.Equal(t, "0", v, "forwarding was turned back off")
}

// Once the node is closed, undo writes nothing (it would write the test's own namespace).
func TestEnableForwardingUndoAfterClose(t *testing.T) {
	n := testenv.Node(t)
	undo, err := n.EnableForwarding()
	require.NoError(t, err)
	require.NoError(t, n.Close())
	assert.NoError(t, undo())
}
