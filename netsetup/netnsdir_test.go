package netsetup_test

import (
	"crypto/rand"
	"encoding/hex"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/edgebpf/edgebpf/internal/testenv"
	"github.com/edgebpf/edgebpf/netsetup"
)

// TestNamespacesSurviveIPNetnsAdd builds a node while /run/netns is a plain directory (a
// fresh machine), lets `ip netns add` run (the first one on a machine turns /run/netns into
// a mount point of its own) and closes the node: everything must go. It runs in a private
// mount namespace with a fresh /run, so the host's mounts are never touched.
func TestNamespacesSurviveIPNetnsAdd(t *testing.T) {
	testenv.RequirePrivileged(t)
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("iproute2's ip is not installed")
	}
	if !inPrivateRun(t) {
		return
	}
	_, err := os.Stat("/run/netns")
	require.True(t, os.IsNotExist(err), "the private /run starts without /run/netns")

	s, err := netsetup.NewSession("test " + t.Name())
	require.NoError(t, err)
	n, err := netsetup.NewNode(s, netsetup.NodeConfig{})
	require.NoError(t, err)
	_, err = n.AddService("svc")
	require.NoError(t, err)
	_, err = n.AddInstance("svc")
	require.NoError(t, err)

	var b [4]byte
	_, _ = rand.Read(b[:])
	other := netsetup.Prefix + "test-" + hex.EncodeToString(b[:])
	for _, args := range [][]string{{"netns", "add", other}, {"netns", "del", other}} {
		out, err := exec.Command("ip", args...).CombinedOutput()
		require.NoError(t, err, "ip %s: %s", strings.Join(args, " "), out)
	}

	assert.NoError(t, s.Close(), "closing the node after `ip netns add`")
	entries, err := os.ReadDir("/run/netns")
	require.NoError(t, err)
	var left []string
	for _, e := range entries {
		left = append(left, e.Name())
	}
	assert.Empty(t, left, "namespace files left in /run/netns")
	list, err := exec.Command("ip", "netns", "list").CombinedOutput()
	assert.NoError(t, err)
	assert.Empty(t, strings.TrimSpace(string(list)), "`ip netns list` after closing")
}
