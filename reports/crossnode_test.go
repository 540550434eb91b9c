package reports

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	fx "github.com/edgebpf/edgebpf/reports/fixture"
	"github.com/edgebpf/edgebpf/subjects"
)

func TestCrossNodeReport(t *testing.T) {
	dir := t.TempDir()
	_, err := fx.CrossNode(dir)
	require.NoError(t, err)
	r, err := Build(dir, subjects.All())
	require.NoError(t, err)

	tables := map[string]*Table{}
	for _, tb := range r.Tables {
		tables[tb.ID] = tb
	}
	same, cross := tables["riegel-5-1"], tables["riegel-5-1-cross-node"]
	require.NotNil(t, same, "the same-node rows of direct and ebpf have their table")
	require.NotNil(t, cross, "and the cross-node rows theirs beside it")
	assert.Equal(t, append([]string{"measurement"}, append([]string{"direct", "userspace", "ebpf+userspace", "ebpf", "nftables"}, "eBPF vs user space", "thesis: user space", "thesis: eBPF", "thesis: improvement")...),
		cross.Header, "the data planes and the mixed pair in the subjects' order")
	var labels, crossLabels []string
	for _, row := range same.Rows {
		labels = append(labels, row[0])
	}
	for _, row := range cross.Rows {
		crossLabels = append(crossLabels, row[0])
	}
	assert.Equal(t, labels, crossLabels, "the same rows as Table 5.1")
	assert.Equal(t, "not run", cross.Rows[0][5], "nftables has no cross-node latency")
	assert.Contains(t, cross.Intro, "2 emulated workers")
	assert.Contains(t, cross.Intro, "client on worker 0, server on worker 1")
	assert.Contains(t, cross.Intro, "unshaped")
	assert.Equal(t, []string{"direct", "ebpf"}, same.Header[1:3], "same-node rows stay out of the cross-node table and back")
	require.NotNil(t, tables["crossing-cost"])
	assert.Equal(t, []string{"measurement", "direct", "ebpf"}, tables["crossing-cost"].Header)
	require.NotNil(t, tables["bottleneck-loss-free-cross-node"])

	figs := map[string]Figure{}
	for _, f := range r.Figures {
		figs[f.Name] = f
	}
	for _, n := range []string{"latency-cdf-cross-node", "throughput-box-cross-node", "jitter-cdf-cross-node", "cpu-ebpf_userspace-cross-node", "bottleneck-loss-cross-node"} {
		f, ok := figs[n]
		if assert.True(t, ok, n) {
			assert.Contains(t, f.Caption, "Across workers")
			_, err := os.Stat(filepath.Join(dir, "plots", n+".png"))
			assert.NoError(t, err)
		}
	}
	_, ok := figs["latency-cdf"]
	assert.True(t, ok, "the same-node figure from the same-node rows")
	skippedCross := func(r *Report) []string {
		var out []string
		for _, s := range r.Skipped {
			if strings.HasSuffix(s.Name, "-cross-node") {
				out = append(out, s.Name)
				assert.Contains(t, s.Reason, "across workers", s.Name)
			}
		}
		return out
	}
	assert.Empty(t, skippedCross(r))
	md, err := os.ReadFile(filepath.Join(dir, "summary.md"))
	require.NoError(t, err)
	assert.Contains(t, string(md), "Table 5.1 across workers (cross-node)")
	assert.Contains(t, string(md), "## latency@cross-node")

	// Without cross-node jitter, its figures are listed with the reason, never drawn empty.
	require.NoError(t, os.RemoveAll(filepath.Join(dir, "raw", "jitter@cross-node")))
	r, err = Build(dir, subjects.All())
	require.NoError(t, err)
	assert.Equal(t, []string{"jitter-box-cross-node", "jitter-cdf-cross-node"}, skippedCross(r))
}

func TestCompareCrossNode(t *testing.T) {
	same, cross, cross2 := t.TempDir(), t.TempDir(), t.TempDir()
	require.NoError(t, fx.Run{Seed: 1}.Write(same))
	for _, d := range []string{cross, cross2} {
		_, err := fx.CrossNode(d)
		require.NoError(t, err)
	}
	_, err := Compare(same, cross, CompareOptions{Threshold: 0.05})
	var me *MismatchError
	require.ErrorAs(t, err, &me)
	assert.Equal(t, []string{"topology (same-node vs cross-node)"}, me.Differences, "one clear difference, not every key")

	c, err := Compare(cross, cross2, CompareOptions{Threshold: 0.05})
	require.NoError(t, err)
	var exps []string
	for _, ch := range c.Changes {
		if !slices.Contains(exps, ch.Experiment) {
			exps = append(exps, ch.Experiment)
		}
	}
	assert.Contains(t, exps, "latency@cross-node", "cross-node rows pair up with cross-node rows")
	assert.Contains(t, exps, "latency", "and same-node rows with same-node rows")
	assert.Zero(t, c.Regressions)
}
