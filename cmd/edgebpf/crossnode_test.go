package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/edgebpf/edgebpf/internal/testenv"
	"github.com/edgebpf/edgebpf/netsetup"
	"github.com/edgebpf/edgebpf/reports"
)

// TestCrossNodeRunChild is the child of TestCleanupAfterKilledCrossNodeRun: a long cross-node
// run that its parent kills.
func TestCrossNodeRunChild(t *testing.T) {
	out := os.Getenv("EDGEBPF_XNODE_CHILD_OUT")
	if out == "" {
		t.Skip("helper of TestCleanupAfterKilledCrossNodeRun")
	}
	edgebpf(context.Background(), "run", "jitter", "--topology", "cross-node", "--profile", "smoke", "--duration", "60s", "--out", out)
}

// TestCleanupAfterKilledCrossNodeRun SIGKILLs a cross-node run while its cluster exists:
// `edgebpf cleanup` removes the workers, their instances and the underlay namespace, and
// marks the run killed.
func TestCleanupAfterKilledCrossNodeRun(t *testing.T) {
	testenv.RequirePrivileged(t)
	out := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	child := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestCrossNodeRunChild$")
	child.Env = append(os.Environ(), "EDGEBPF_XNODE_CHILD_OUT="+out)
	require.NoError(t, child.Start())
	t.Cleanup(func() { _ = child.Process.Kill(); _ = child.Wait() })

	var id string
	require.Eventually(t, func() bool {
		live, _, _ := netsetup.Sessions()
		for _, s := range live {
			if s.PID == child.Process.Pid && len(s.Clusters) == 1 && len(s.Nodes) == 2 && instances(s.Nodes[1]) == 2 {
				id = s.ID
				return true
			}
		}
		return false
	}, 30*time.Second, 50*time.Millisecond, "the child's cluster with its client and server instances")
	nss, _ := filepath.Glob("/run/netns/" + netsetup.Prefix + id + "-*")
	var names []string
	for _, n := range nss {
		names = append(names, strings.TrimPrefix(filepath.Base(n), netsetup.Prefix+id+"-"))
	}
	assert.Subset(t, names, []string{"x-direct-underlay", "x-direct-w0", "x-direct-w1", "x-direct-w0-client-0", "x-direct-w1-server-0"})

	require.NoError(t, child.Process.Kill())
	_ = child.Wait()
	code, stdout, stderr := edgebpf(context.Background(), "cleanup")
	require.Zero(t, code, stderr)
	t.Log(stdout)
	for _, n := range nss {
		_, err := os.Stat(n)
		assert.True(t, os.IsNotExist(err), "%s is removed", n)
	}
	meta, err := reports.ReadMeta(out)
	require.NoError(t, err)
	assert.Equal(t, "killed", meta.Status)
}

// instances counts the instances a node's status lists, remote ones included.
func instances(n netsetup.NodeStatus) int {
	c := 0
	for _, s := range n.Services {
		c += len(s.Instances)
	}
	return c
}
