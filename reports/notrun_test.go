package reports

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/edgebpf/edgebpf/subjects"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestSkippedExperimentsAreShown checks that an experiment a run skipped for a missing
// feature is listed with its reason in summary.md and index.html, and the machine's features
// and run hygiene in the metadata.
func TestSkippedExperimentsAreShown(t *testing.T) {
	dir := thesisFixture(t)
	m, err := ReadMeta(dir)
	require.NoError(t, err)
	m.Experiments = append(m.Experiments, ExperimentMeta{Name: "latency", DataPlane: "ebpf", Meter: "tcpping", Reps: 5,
		Status: "skipped", SkipReason: "this machine lacks tcx (attach tcx link: not supported (requires >= v6.6))"})
	m.Features = []FeatureMeta{{Name: "tcx", OK: false, Detail: "not supported"}, {Name: "xdp", OK: true, Detail: "native"}}
	m.Pinning, m.PinningNote = map[string]string{"client": "0", "server": "1"}, "the meters' loops"
	m.Warmup = &WarmupMeta{Enabled: true, Profile: "smoke"}
	m.StartLoad = &LoadMeta{LoadAvg1: 0.5, BusyPercent: 3, Sample: 1}
	require.NoError(t, WriteMeta(dir, m))
	_, err = Build(dir, subjects.All())
	require.NoError(t, err)

	md, err := os.ReadFile(filepath.Join(dir, "summary.md"))
	require.NoError(t, err)
	assert.Contains(t, string(md), "# Not run on this machine")
	assert.Contains(t, string(md), "| latency | ebpf | skipped: this machine lacks tcx (attach tcx link: not supported (requires >= v6.6)) |")

	page, err := os.ReadFile(filepath.Join(dir, "index.html"))
	require.NoError(t, err)
	for _, want := range []string{
		"<h2>Not run on this machine</h2>",
		"latency on ebpf: skipped: this machine lacks tcx (attach tcx link: not supported (requires &gt;= v6.6))",
		"<td>skipped: this machine lacks tcx",
		"Kernel and machine features", "<td>tcx</td><td>no</td><td>not supported</td>",
		"client on CPU 0, server on CPU 1 (the meters&#39; loops)",
		"one unrecorded run of the smoke parameters",
		"loadavg 0.50, 3 % busy over 1 s",
	} {
		assert.Contains(t, string(page), want)
	}

	// A run without skips has no such section.
	assert.Empty(t, notRunMarkdown(&Meta{Experiments: []ExperimentMeta{{Name: "x", Status: "skipped"}}}), "interrupted, no reason")
	assert.Empty(t, notRunMarkdown(nil))
}
