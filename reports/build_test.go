package reports

import (
	"bytes"
	"errors"
	"flag"
	"image/png"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/edgebpf/edgebpf/subjects"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gonum.org/v1/plot/vg"

	fx "github.com/edgebpf/edgebpf/reports/fixture"
)

var fullFixture = flag.String("full-fixture", "", "write a full-sized fixture results directory here, report it and log the wall time")

// allFigures are the figures a run of every experiment on every data plane has.
var allFigures = []string{
	"latency-cdf", "jitter-box", "jitter-cdf", "throughput-box", "throughput-time",
	"bottleneck-owd", "bottleneck-loss", "bottleneck-rates", "bottleneck-cpu-per-packet",
	"cpu-direct", "cpu-userspace", "cpu-ebpf", "cpu-nftables", "cpu-ewma", "ram", "cpu-per-gbit", "bpf-cost",
	"speedlimit-curve", "speedlimit-response-box", "speedlimit-clients", "speedlimit-droppoint", "speedlimit-scaling",
	"speedlimit-load-time", "speedlimit-load-rate",
}

func thesisFixture(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	_, err := fx.Thesis(dir, fx.Small)
	require.NoError(t, err)
	return dir
}

func TestBuildThesisFixture(t *testing.T) {
	dir := thesisFixture(t)
	r, err := Build(dir, subjects.All())
	require.NoError(t, err)
	assert.Empty(t, r.Skipped, "every figure has data")

	var names []string
	for _, f := range r.Figures {
		names = append(names, f.Name)
	}
	assert.Equal(t, allFigures, names)
	for _, n := range allFigures {
		pb, err := os.ReadFile(filepath.Join(dir, "plots", n+".png"))
		require.NoError(t, err)
		assert.Greater(t, len(pb), 20_000, "%s.png is not trivial", n)
		cfg, err := png.DecodeConfig(bytes.NewReader(pb))
		require.NoError(t, err, "%s.png is a PNG", n)
		assert.GreaterOrEqual(t, cfg.Width, int(figWidth/vg.Inch)*pngDPI, "%s.png: the plot's width, and its legend's right of it", n)
		sv, err := os.ReadFile(filepath.Join(dir, "plots", n+".svg"))
		require.NoError(t, err)
		assert.True(t, bytes.HasPrefix(sv, []byte("<?xml")) && bytes.Contains(sv, []byte("<svg")), "%s.svg is an SVG", n)
		assert.Greater(t, len(sv), 3_000)
		assert.NotContains(t, string(sv), "NaN", "%s.svg", n)
		assert.Contains(t, string(sv), "profile quick", "%s.svg carries the footer", n)
	}
	// Every figure with a thesis counterpart shows the thesis's values, labelled.
	for n, want := range map[string]string{
		"latency-cdf": "thesis userspace: 4.66 ms (mean)", "jitter-cdf": "thesis ebpf: 0.0082 ms (mean)",
		"jitter-box": "thesis userspace: 0.0326 ms (mean)", "throughput-box": "thesis: 34.20 Gbit/s hardware limit",
		"throughput-time": "thesis ebpf: 21.20 Gbit/s (mean)", "bottleneck-loss": "thesis userspace: loss 1.6 % at 250",
		"cpu-userspace": "thesis userspace: 20.19 % (mean)", "cpu-ebpf": "thesis ebpf: 5.39 % (mean)", "cpu-ewma": "thesis ebpf: 5.39 %",
		"speedlimit-curve": "thesis: eq. 5.1", "speedlimit-response-box": "thesis mixed: 1.0784 ms (median)",
		"speedlimit-clients": "thesis ebpf: 1.2654 ms (median, Table 5.5)", "speedlimit-droppoint": "thesis userspace: 139 (median)",
	} {
		sv, err := os.ReadFile(filepath.Join(dir, "plots", n+".svg"))
		require.NoError(t, err)
		assert.Contains(t, string(sv), want, "%s.svg", n)
	}

	md, err := os.ReadFile(filepath.Join(dir, "summary.md"))
	require.NoError(t, err)
	golden(t, "thesis-summary.md", md)

	page, err := os.ReadFile(filepath.Join(dir, "index.html"))
	require.NoError(t, err)
	html := string(page)
	for _, w := range []string{
		"Riegel 2024, Table 5.1", "Weinhold 2023, Table 5.4", "Weinhold 2023, Table 5.5", "Weinhold 2023, Table 5.6",
		"highest loss-free rate", "Why absolute numbers differ", "ratio: RTT, user space / eBPF", "6.18.0-fixture", "Synthetic CPU", "XDP mode", "generic",
		"edgebpf run all --profile quick --dataplane direct,userspace,ebpf,nftables,mixed --out results/fixture",
	} {
		assert.Contains(t, html, w)
	}
	assert.Equal(t, len(allFigures), strings.Count(html, `src="data:image/png;base64,`), "every figure is embedded")
	assert.NotRegexp(t, regexp.MustCompile(`(?i)(src|href)="(https?:)?//`), html, "nothing is fetched from the network")
	assert.NotContains(t, html, "<script")
	assert.NotContains(t, html, "Problems with this run")

	// Rebuilding gives the same files.
	_, err = Build(dir, subjects.All())
	require.NoError(t, err)
	again, err := os.ReadFile(filepath.Join(dir, "index.html"))
	require.NoError(t, err)
	assert.Equal(t, page, again)
}

func TestBuildSkipsWhatDidNotRun(t *testing.T) {
	dir := writeFixture(t)
	require.NoError(t, WriteMeta(dir, &Meta{Profile: "smoke", Status: "done"}))
	// A plot file from an earlier report that no longer has data is removed.
	require.NoError(t, os.MkdirAll(filepath.Join(dir, "plots"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "plots", "ram.png"), []byte("old"), 0o644))

	r, err := Build(dir, subjects.All())
	require.NoError(t, err)
	var names []string
	for _, f := range r.Figures {
		names = append(names, f.Name)
	}
	assert.Equal(t, []string{"latency-cdf", "bottleneck-owd", "bottleneck-loss"}, names)
	page, err := os.ReadFile(filepath.Join(dir, "index.html"))
	require.NoError(t, err)
	assert.Contains(t, string(page), "Figures without data in this run")
	assert.Contains(t, string(page), "no jitter samples of the jitter experiment in this run")
	assert.Contains(t, string(page), "no response_time samples of the speedlimit-response experiment in this run")
	_, err = os.Stat(filepath.Join(dir, "plots", "ram.png"))
	assert.ErrorIs(t, err, os.ErrNotExist)
}

func TestBuildNotAResultsDirectory(t *testing.T) {
	dir := t.TempDir()
	_, err := Build(dir, subjects.All())
	var ie *InputError
	require.ErrorAs(t, err, &ie)
	assert.Contains(t, err.Error(), "is "+dir+" an edgebpf results directory?")
	_, err = os.Stat(filepath.Join(dir, "index.html"))
	assert.ErrorIs(t, err, os.ErrNotExist, "nothing is written")

	require.NoError(t, os.WriteFile(filepath.Join(dir, "meta.json"), []byte("{"), 0o644))
	_, err = Build(dir, subjects.All())
	require.ErrorAs(t, err, &ie)
	assert.Contains(t, err.Error(), "parse "+filepath.Join(dir, "meta.json"))
}

func TestBuildReportsTheRestWhenARowIsBad(t *testing.T) {
	dir := thesisFixture(t)
	bad := RawPath(dir, "jitter", "ebpf")
	b, err := os.ReadFile(bad)
	require.NoError(t, err)
	lines := strings.SplitAfter(string(b), "\n")
	lines[3] = "jitter,ebpf,1,2,0.1,,,owd,fast,s\n"
	require.NoError(t, os.WriteFile(bad, []byte(strings.Join(lines, "")), 0o644))

	r, err := Build(dir, subjects.All())
	require.Error(t, err)
	var ie *InputError
	assert.ErrorAs(t, err, &ie)
	assert.Contains(t, err.Error(), bad+`:4: value "fast" is not a number`)
	assert.Len(t, r.Figures, len(allFigures), "the other files are still reported")
	page, err := os.ReadFile(filepath.Join(dir, "index.html"))
	require.NoError(t, err)
	assert.Contains(t, string(page), "Problems with this run")
	assert.Contains(t, string(page), `:4: value &#34;fast&#34; is not a number`)
}

func TestBuildNeverPlotsNaN(t *testing.T) {
	dir := thesisFixture(t)
	// Non-finite values anywhere a figure reads from: they are dropped, never drawn.
	extra := map[string]string{
		"latency":    "latency,direct,1,99,NaN,,,rtt,NaN,s\nlatency,direct,1,100,1,,,rtt,+Inf,s\n",
		"bottleneck": "bottleneck,direct,1,0,NaN,1000000,bit/s,owd,NaN,s\nbottleneck,direct,1,0,1,3000000000,bit/s,loss,NaN,percent\n",
		"resources":  "resources,direct,1,5,NaN,load,phase,cpu,NaN,percent\nresources,direct,1,6,1,load,phase,cpu,-Inf,percent\n",
	}
	for exp, rows := range extra {
		f, err := os.OpenFile(RawPath(dir, exp, "direct"), os.O_APPEND|os.O_WRONLY, 0)
		require.NoError(t, err)
		_, err = f.WriteString(rows)
		require.NoError(t, err)
		require.NoError(t, f.Close())
	}
	// A data plane whose only samples are NaN has no series at all.
	require.NoError(t, os.MkdirAll(filepath.Dir(RawPath(dir, "throughput", "broken")), 0o755))
	require.NoError(t, os.WriteFile(RawPath(dir, "throughput", "broken"),
		[]byte(strings.Join(Header, ",")+"\nthroughput,broken,1,0,NaN,,,throughput,NaN,bit/s\n"), 0o644))
	r, err := Build(dir, subjects.All())
	require.NoError(t, err)
	assert.Len(t, r.Figures, len(allFigures))
	for _, f := range r.Figures {
		assert.NotContains(t, string(f.SVG), "NaN", f.Name)
		assert.NotContains(t, string(f.SVG), "broken", f.Name)
	}
}

func TestSketchKeepsExtremes(t *testing.T) {
	v := make([]float64, 10_000)
	for i := range v {
		v[i] = float64(i)
	}
	s := sketch(v, 11)
	assert.Equal(t, []float64{0, 1000, 2000, 3000, 4000, 5000, 5999, 6999, 7999, 8999, 9999}, s)
	assert.Equal(t, v[:5], sketch(v[:5], 11))
}

// TestFullFixture writes a full-sized results directory and reports it, logging the wall
// time: go test ./reports -run TestFullFixture -full-fixture /tmp/full -v.
func TestFullFixture(t *testing.T) {
	if *fullFixture == "" {
		t.Skip("give -full-fixture DIR to write and report a full-sized fixture")
	}
	rows, err := fx.Thesis(*fullFixture, fx.Full)
	require.NoError(t, err)
	start := time.Now()
	r, err := Build(*fullFixture, subjects.All())
	require.NoError(t, err)
	t.Logf("%d raw rows: report built in %v (%d figures, %d entries)", rows, time.Since(start).Round(time.Millisecond), len(r.Figures), len(r.Entries))
}

func TestInputErrorUnwraps(t *testing.T) {
	err := &InputError{os.ErrNotExist}
	assert.True(t, errors.Is(err, os.ErrNotExist))
}
