package main

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/edgebpf/edgebpf/reports/fixture"
)

func TestCompareGuardAndForce(t *testing.T) {
	root := t.TempDir()
	base, nw := filepath.Join(root, "base"), filepath.Join(root, "new")
	require.NoError(t, fixture.Run{Seed: 1}.Write(base))
	require.NoError(t, fixture.Run{Seed: 2, Profile: "full", Kernel: "6.19.0"}.Write(nw))

	code, out, stderr := edgebpf(context.Background(), "compare", base, nw)
	assert.Equal(t, 2, code, "runs of different profiles are refused")
	assert.Empty(t, out)
	assert.Equal(t, 1, strings.Count(strings.TrimSpace(stderr), "\n")+1, "one line: %q", stderr)
	assert.Contains(t, stderr, "differ in profile (quick vs full)")
	assert.Contains(t, stderr, "--force")

	code, out, _ = edgebpf(context.Background(), "compare", base, nw, "--force")
	assert.Zero(t, code, "an A/A pair has no regression")
	assert.Contains(t, out, "forced: compared although the runs differ in profile (quick vs full)")
	assert.Contains(t, out, "warning: kernel differs (6.18.0-fixture vs 6.19.0)")

	require.NoError(t, fixture.Run{Seed: 3, Reps: 3}.Write(filepath.Join(root, "a3")))
	require.NoError(t, fixture.Run{Seed: 4, Reps: 3, Worsen: 0.5}.Write(filepath.Join(root, "b3")))
	code, out, _ = edgebpf(context.Background(), "compare", filepath.Join(root, "a3"), filepath.Join(root, "b3"))
	assert.Zero(t, code, "three repetitions a side give no verdict, so no regression")
	assert.Contains(t, out, "4 with too few reps")
}
