package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/edgebpf/edgebpf/internal/testenv"
)

// syncBuffer is a bytes.Buffer safe for a command writing while the test reads.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestSpeedLimitBadInput(t *testing.T) {
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"speedlimit", "serve"}, "--mode is required: choose userspace, mixed or ebpf"},
		{[]string{"speedlimit", "serve", "--mode", "ebpf", "--node", "Big Node"}, "--node: node name"},
		{[]string{"speedlimit", "serve", "--mode", "kernel"}, `--mode: unknown speed-limit server mode "kernel": choose userspace, mixed, ebpf`},
		{[]string{"speedlimit", "serve", "--mode", "ebpf", "--xdp", "offload"}, `--xdp: unknown xdp mode "offload"`},
		{[]string{"speedlimit", "client", "--leave", "end"}, `--leave "end": choose each or never`},
		{[]string{"speedlimit", "client", "-n", "0"}, "-n and -m must be at least 1"},
	}
	for _, c := range cases {
		code, _, stderr := edgebpf(context.Background(), c.args...)
		assert.Equal(t, 2, code, "%v", c.args)
		assert.Contains(t, stderr, c.want, "%v", c.args)
		assert.LessOrEqual(t, strings.Count(strings.TrimSpace(stderr), "\n"), 1, "one sentence: %q", stderr)
	}
}

func TestSpeedLimitServeAndClient(t *testing.T) {
	testenv.RequirePrivileged(t)
	// Other tests (and other edgebpf processes) may run nodes with the same services at the
	// same time: the test's own node has a name of its own.
	node := fmt.Sprintf("sltest%d", os.Getpid())
	code, _, stderr := edgebpf(context.Background(), "speedlimit", "client", "--node", node, "-n", "1", "-m", "1")
	require.Equal(t, 1, code)
	assert.Contains(t, stderr, " is running", "no node of that name: %s", stderr)

	for _, mode := range []string{"userspace", "mixed", "ebpf"} {
		t.Run(mode, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			var out, errb syncBuffer
			done := make(chan int, 1)
			go func() {
				done <- run(ctx, []string{"speedlimit", "serve", "--mode", mode, "--period", "100ms", "--node", node}, &out, &errb)
			}()
			require.Eventually(t, func() bool { return strings.Contains(errb.String(), "serving speed limits") }, 10*time.Second, 10*time.Millisecond, errb.String())
			if mode != "userspace" {
				assert.Contains(t, errb.String(), "xdp=native")
			}

			code, stdout, stderr := edgebpf(context.Background(), "speedlimit", "client", "--node", node, "-n", "3", "-m", "50")
			require.Zero(t, code, stderr)
			assert.Contains(t, stdout, "3 clients x 50 requests, from client-0 to 10.18.0.")
			assert.Contains(t, stdout, "replies      150, timeouts 0")
			assert.Contains(t, stdout, "thesis       time for M requests / M")

			code, stdout, stderr = edgebpf(context.Background(), "speedlimit", "client", "--node", node, "--rate", "2000", "--duration", "300ms", "-n", "4", "--json")
			require.Zero(t, code, stderr)
			assert.Contains(t, stdout, `"achieved_rate"`)

			// Pointed at nothing: every request times out, and it says so.
			code, _, stderr = edgebpf(context.Background(), "speedlimit", "client", "--node", node, "--to", "10.18.0.250", "-n", "2", "-m", "2", "--timeout", "100ms")
			assert.Equal(t, 1, code)
			assert.Contains(t, stderr, "no reply from 10.18.0.250 port 5300: all 4 requests timed out after 100ms or were refused")

			nodes, _ := liveNodes()
			var ns string
			for _, n := range nodes {
				if n.Name == node {
					ns = n.Namespace
				}
			}
			require.NotEmpty(t, ns)
			cancel()
			select {
			case code := <-done:
				assert.Zero(t, code, errb.String())
			case <-time.After(10 * time.Second):
				t.Fatal("serve did not stop")
			}
			assert.Contains(t, out.String(), "stopped: 0 cars in range")
			_, err := os.Stat(filepath.Join("/run/netns", ns))
			assert.True(t, os.IsNotExist(err), "serve's own node is removed on exit")
		})
	}
}
