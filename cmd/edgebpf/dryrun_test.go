package main

import (
	"context"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestRunDryRun(t *testing.T) {
	code, out, errOut := edgebpf(context.Background(), "run", "all", "--profile", "full", "--dataplane", "all", "--dry-run", "--out", t.TempDir()+"/never")
	assert.Equal(t, 0, code, errOut)
	for _, want := range []string{"plan (profile full", "speedlimit-droppoint", "mixed", "nftables", "total"} {
		assert.Contains(t, out, want)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	assert.True(t, strings.HasPrefix(lines[len(lines)-1], "total"), lines[len(lines)-1])
	assert.NotContains(t, out, "results:", "nothing ran")

	code, _, errOut = edgebpf(context.Background(), "run", "--dry-run", "--profile", "fast")
	assert.Equal(t, 2, code)
	assert.Contains(t, errOut, `unknown profile "fast"`)
}
