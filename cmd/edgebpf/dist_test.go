package main

import (
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/edgebpf/edgebpf/internal/testenv"
	"github.com/edgebpf/edgebpf/reports"
)

// minimalPath is what the static binary gets: no Go toolchain, no source tree, no GOPATH.
const minimalPath = "PATH=/usr/sbin:/usr/bin:/sbin:/bin"

// TestStaticBinary builds the binary as `make dist` does (the target itself, into a temporary
// directory) and runs it from an empty directory with a minimal environment: `edgebpf list`,
// `edgebpf check` and, with privileges, a smoke experiment whose results directory is
// complete.
func TestStaticBinary(t *testing.T) {
	if testing.Short() {
		t.Skip("skipping: builds the static binary (about a minute)")
	}
	makePath, err := exec.LookPath("make")
	if err != nil {
		t.Skip("skipping: make is not installed")
	}
	dist := t.TempDir()
	build := exec.Command(makePath, "-C", "../..", "dist", "DIST_ARCHS="+runtime.GOARCH, "DIST_DIR="+dist)
	built, err := build.CombinedOutput()
	require.NoError(t, err, "make dist: %s", built)
	bin := filepath.Join(dist, "edgebpf-linux-"+runtime.GOARCH)
	if fi, err := os.Stat(bin); assert.NoError(t, err) {
		t.Logf("%s: %.1f MiB", filepath.Base(bin), float64(fi.Size())/(1<<20))
	}

	// Static: no program interpreter, no shared libraries.
	f, err := elf.Open(bin)
	require.NoError(t, err)
	for _, p := range f.Progs {
		assert.NotEqual(t, elf.PT_INTERP, p.Type, "the binary asks for a dynamic loader")
	}
	libs, _ := f.ImportedLibraries()
	assert.Empty(t, libs)
	f.Close()

	work := t.TempDir()
	runBin := func(args ...string) (int, string) {
		cmd := exec.Command("env", append([]string{"-i", minimalPath, bin}, args...)...)
		cmd.Dir = work
		out, err := cmd.CombinedOutput()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatalf("run %v: %v", args, err)
		}
		return code, string(out)
	}
	code, out := runBin("list")
	require.Zero(t, code, out)
	for _, w := range []string{"latency", "speedlimit-load", "direct, userspace, ebpf, nftables"} {
		assert.Contains(t, out, w)
	}
	code, out = runBin("check")
	require.Zero(t, code, out)
	assert.Contains(t, out, "FEATURE")

	testenv.RequirePrivileged(t)
	code, out = runBin("run", "latency", "--profile", "smoke", "--out", "X")
	require.Zero(t, code, out)
	assert.Contains(t, out, "results: X (status done)")
	m, err := reports.ReadMeta(filepath.Join(work, "X"))
	require.NoError(t, err)
	assert.Equal(t, "done", m.Status)
	assert.NotEmpty(t, m.Features)
	for _, name := range []string{"index.html", "summary.json", "summary.md", "raw/latency/direct.csv"} {
		_, err := os.Stat(filepath.Join(work, "X", name))
		assert.NoError(t, err, name)
	}
	assert.False(t, strings.Contains(out, "panic"), out)
}
