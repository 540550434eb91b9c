package main

import (
	"context"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/edgebpf/edgebpf/internal/testenv"
)

func TestCheckSaysWhatRunsHere(t *testing.T) {
	testenv.RequirePrivileged(t)
	code, out, stderr := edgebpf(context.Background(), "check")
	require.Zero(t, code, stderr)
	for _, w := range []string{"FEATURE", "tcx", "xdp", "nftables", "EXPERIMENT", "RUNS ON",
		"speedlimit-load", "configurations userspace, mixed, ebpf", "everything can run here.", "governor"} {
		assert.Contains(t, out, w)
	}
	code, out, _ = edgebpf(context.Background(), "check", "--dataplane", "direct")
	require.Zero(t, code)
	assert.NotContains(t, out, "nftables, userspace")
}

func TestBadPinningIsOneSentence(t *testing.T) {
	for args, want := range map[string]string{
		"run --cpu-client x":      `--cpu-client: cpu list "x": "x" is not a CPU number or range`,
		"run --cpu-server 1000":   "--cpu-server: CPU 1000 is not available to this process",
		"run --cpu-proxy 3-1":     `--cpu-proxy: cpu list "3-1"`,
		"check --dataplane bogus": `unknown data plane "bogus"`,
	} {
		code, _, stderr := edgebpf(context.Background(), strings.Fields(args)...)
		assert.Equal(t, 2, code, args)
		assert.Contains(t, stderr, want, args)
		assert.LessOrEqual(t, strings.Count(strings.TrimSpace(stderr), "\n"), 0, "one line: %q", stderr)
	}
}
