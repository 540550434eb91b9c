package main

import (
	"context"
	"encoding/json"
	"image"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/edgebpf/edgebpf/internal/testenv"
	"github.com/edgebpf/edgebpf/reports"
	"github.com/edgebpf/edgebpf/reports/fixture"
)

func thesisResults(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	_, err := fixture.Thesis(dir, fixture.Small)
	require.NoError(t, err)
	return dir
}

func TestReportBuildsEverything(t *testing.T) {
	dir := thesisResults(t)
	code, out, stderr := edgebpf(context.Background(), "report", dir)
	require.Zero(t, code, stderr)
	assert.Contains(t, out, "24 figures (0 without data)")
	for _, f := range []string{"summary.json", "summary.md", "index.html", "plots/latency-cdf.png", "plots/speedlimit-scaling.svg"} {
		fi, err := os.Stat(filepath.Join(dir, f))
		require.NoError(t, err, f)
		assert.Positive(t, fi.Size(), f)
	}
}

func TestReportBadInput(t *testing.T) {
	dir := thesisResults(t)
	bad := reports.RawPath(dir, "latency", "ebpf")
	b, err := os.ReadFile(bad)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(bad, append(b, "latency,ebpf,1,0,0,,,rtt,1,ms\n"...), 0o644))
	lines := strings.Count(string(b), "\n") + 1

	code, out, stderr := edgebpf(context.Background(), "report", dir)
	assert.Equal(t, 2, code)
	assert.Contains(t, stderr, bad+":"+strconv.Itoa(lines)+`: metric rtt has unit "ms", want "s"`)
	assert.Equal(t, 1, strings.Count(strings.TrimSpace(stderr), "\n")+1, "one line: %q", stderr)
	assert.Contains(t, out, "figures", "what can be reported is reported")
	_, err = os.Stat(filepath.Join(dir, "index.html"))
	assert.NoError(t, err)

	code, _, stderr = edgebpf(context.Background(), "report", t.TempDir())
	assert.Equal(t, 2, code)
	assert.Contains(t, stderr, "an edgebpf results directory?")
}

func TestCompareCommand(t *testing.T) {
	root := t.TempDir()
	base, nw := filepath.Join(root, "base"), filepath.Join(root, "new")
	require.NoError(t, fixture.Compare(base, nw))

	code, out, stderr := edgebpf(context.Background(), "compare", base, nw)
	assert.Equal(t, 1, code, "a significant 20 % latency regression")
	assert.Contains(t, out, "regression")
	assert.Contains(t, out, "only in the baseline (1):")
	assert.Contains(t, stderr, "2 significant regressions beyond 5 %")

	code, out, _ = edgebpf(context.Background(), "compare", base, nw, "--threshold", "25")
	assert.Zero(t, code, "20 % is within a 25 % threshold")
	assert.Contains(t, out, "0 regressions, 2 improvements")

	code, out, _ = edgebpf(context.Background(), "compare", nw, nw, "--format", "json")
	assert.Zero(t, code, "a run does not regress against itself")
	var c reports.Comparison
	require.NoError(t, json.Unmarshal([]byte(out), &c))
	assert.NotEmpty(t, c.Changes)

	for _, f := range []string{"csv", "markdown"} {
		code, out, _ = edgebpf(context.Background(), "compare", base, nw, "--format", f)
		assert.Equal(t, 1, code)
		assert.Contains(t, out, "regression", f)
	}

	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"compare", base}, "compare needs two results directories"},
		{[]string{"compare", base, filepath.Join(root, "nowhere")}, "an edgebpf results directory?"},
		{[]string{"compare", base, nw, "--format", "yaml"}, `--format "yaml" is unknown`},
		{[]string{"compare", base, nw, "--threshold", "-1"}, "--threshold -1 must be"},
		{[]string{"compare", base, nw, "--alpha", "2"}, "--alpha 2 must be"},
	} {
		code, _, stderr := edgebpf(context.Background(), tc.args...)
		assert.Equal(t, 2, code, "%v", tc.args)
		assert.Contains(t, stderr, tc.want, "%v", tc.args)
		assert.NotContains(t, stderr, "goroutine")
	}
}

// TestReportRendersInChromium opens index.html in headless Chromium (the Debian package;
// scripts/install-deps.sh installs it), takes a screenshot and checks that the page drew
// something: a blank or broken page is one flat colour.
func TestReportRendersInChromium(t *testing.T) {
	browser := ""
	for _, b := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(b); err == nil {
			browser = p
			break
		}
	}
	if browser == "" {
		if os.Getenv(testenv.RequireEnv) == "1" {
			t.Fatalf("chromium is not installed (%s=1): run scripts/install-deps.sh", testenv.RequireEnv)
		}
		t.Skip("skipping: chromium is not installed (scripts/install-deps.sh installs it)")
	}
	dir := thesisResults(t)
	code, _, stderr := edgebpf(context.Background(), "report", dir)
	require.Zero(t, code, stderr)

	shot := filepath.Join(t.TempDir(), "index.png")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
		"--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--user-data-dir="+t.TempDir(), "--screenshot="+shot, "--window-size=1400,6000",
		"file://"+filepath.Join(dir, "index.html"))
	cmd.Env = append(os.Environ(), "HOME="+t.TempDir())
	outb, err := cmd.CombinedOutput()
	require.NoError(t, err, "chromium: %s", outb)

	f, err := os.Open(shot)
	require.NoError(t, err, "chromium wrote no screenshot: %s", outb)
	defer f.Close()
	img, err := png.Decode(f)
	require.NoError(t, err)
	assert.Equal(t, image.Rect(0, 0, 1400, 6000), img.Bounds())

	// The page is mostly white with text, tables and figures: many pixels are dark, and
	// the figures' colours are there.
	var n, dark, coloured int
	var sum, sumSq float64
	for y := img.Bounds().Min.Y; y < img.Bounds().Max.Y; y += 2 {
		for x := img.Bounds().Min.X; x < img.Bounds().Max.X; x += 2 {
			r, g, b, _ := img.At(x, y).RGBA()
			l := (0.299*float64(r) + 0.587*float64(g) + 0.114*float64(b)) / 65535
			sum += l
			sumSq += l * l
			n++
			if l < 0.5 {
				dark++
			}
			if max(r, g, b)-min(r, g, b) > 0x4000 {
				coloured++
			}
		}
	}
	mean := sum / float64(n)
	variance := sumSq/float64(n) - mean*mean
	t.Logf("screenshot: mean luminance %.3f, variance %.4f, dark %.1f %%, coloured %.1f %%",
		mean, variance, 100*float64(dark)/float64(n), 100*float64(coloured)/float64(n))
	assert.Greater(t, variance, 0.01, "the page is not one flat colour")
	assert.Greater(t, float64(dark)/float64(n), 0.01, "text and lines are drawn")
	assert.Greater(t, float64(coloured)/float64(n), 0.001, "the figures' colours are drawn")
}
