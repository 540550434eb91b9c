package reports

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/edgebpf/edgebpf/stats"
	"github.com/edgebpf/edgebpf/subjects"
)

// writeDropRun writes a drop-point run: per configuration, three repetitions with the given
// drop points and censored and client-limited flags, and meta.json naming the search.
func writeDropRun(t *testing.T, dir, search string, runs map[string][3][3]float64) {
	t.Helper()
	m := &Meta{Tool: "edgebpf", Profile: "quick", Status: "done"}
	for _, dp := range []string{"userspace", "mixed", "ebpf"} {
		r, ok := runs[dp]
		if !ok {
			continue
		}
		var samples []stats.Sample
		for rep := range 3 {
			samples = append(samples,
				stats.Sample{Rep: rep + 1, Metric: stats.DropCensored, Value: r[rep][1]},
				stats.Sample{Rep: rep + 1, Metric: stats.ClientLimited, Value: r[rep][2]},
				stats.Sample{Rep: rep + 1, Metric: stats.DropPoint, Value: r[rep][0]})
		}
		require.NoError(t, WriteRaw(dir, expSLDropPoint, dp, samples))
		params := map[string]any{"max": 1000.0}
		if search != "" {
			params["search"] = search
		}
		m.Experiments = append(m.Experiments, ExperimentMeta{Name: expSLDropPoint, DataPlane: dp, Reps: 3, Params: params, Status: "done"})
	}
	require.NoError(t, WriteMeta(dir, m))
}

func TestDropPointCensored(t *testing.T) {
	dir := t.TempDir()
	writeDropRun(t, dir, "geometric", map[string][3][3]float64{
		"userspace": {{130, 0, 0}, {140, 0, 0}, {135, 0, 0}},
		"mixed":     {{1000, 1, 1}, {1000, 1, 1}, {900, 0, 0}},
		"ebpf":      {{1000, 1, 0}, {1000, 1, 0}, {1000, 1, 0}},
	})
	ds, err := LoadDataset(dir, subjects.All())
	require.NoError(t, err)

	e, ok := ds.entry(expSLDropPoint, "userspace", stats.DropPoint.Name, "")
	require.True(t, ok)
	assert.False(t, e.Censored)
	assert.Equal(t, LimitedByServer, e.LimitedBy)
	e, _ = ds.entry(expSLDropPoint, "mixed", stats.DropPoint.Name, "")
	assert.True(t, e.Censored, "two of three repetitions found no drop: the median is a lower bound")
	assert.Equal(t, 1000.0, e.Bound)
	assert.Equal(t, LimitedByClient, e.LimitedBy)
	e, _ = ds.entry(expSLDropPoint, "ebpf", stats.DropPoint.Name, "")
	assert.Equal(t, LimitedByCap, e.LimitedBy, "the client had room: the cap limited")

	// summary.json carries the fields; an old file without them still reads.
	require.NoError(t, writeSummaries(ds, ThesisTables(ds)))
	b, err := os.ReadFile(filepath.Join(dir, "summary.json"))
	require.NoError(t, err)
	assert.Contains(t, string(b), `"censored": true`)
	assert.Contains(t, string(b), `"bound": 1000`)
	assert.Contains(t, string(b), `"limited_by": "client"`)
	var old []Entry
	require.NoError(t, json.Unmarshal([]byte(`[{"experiment":"speedlimit-droppoint","dataplane":"ebpf","metric":"drop_point","unit":"count","better":"higher","n":3,"median":300}]`), &old))
	assert.False(t, old[0].Censored)

	var t56 *Table
	for _, tb := range ThesisTables(ds) {
		if tb.ID == "weinhold-5-6" {
			t56 = tb
		}
	}
	require.NotNil(t, t56)
	cells := map[string][]string{}
	for _, r := range t56.Rows {
		cells[r[0]] = r
	}
	assert.True(t, strings.HasPrefix(cells["mixed"][1], "≥ 1000 "), cells["mixed"][1])
	assert.Contains(t, cells["mixed"][1], "(client)")
	assert.Contains(t, cells["ebpf"][1], "(cap)")
	assert.True(t, strings.HasPrefix(cells["ebpf"][5], "≥ "), "a factor from a lower bound is a lower bound: %s", cells["ebpf"][5])
	assert.NotContains(t, cells["userspace"][1], "≥")
	notes := strings.Join(t56.Notes, "\n")
	assert.Contains(t, notes, "Search: geometric")
	assert.Contains(t, notes, "lower bound (censored)")

	figs, _, err := Figures(ds)
	require.NoError(t, err)
	for _, f := range figs {
		if f.Name == "speedlimit-droppoint" {
			assert.Contains(t, f.Caption, "open triangle")
		}
	}
}

func TestDropPointCensoredIsNoRegression(t *testing.T) {
	base, nw := t.TempDir(), t.TempDir()
	// The baseline found drops at 900; the new run hit its cap of 600 without one: a
	// "worse" lower bound that says nothing about the server.
	writeDropRun(t, base, "linear", map[string][3][3]float64{"ebpf": {{900, 0, 0}, {905, 0, 0}, {910, 0, 0}}})
	writeDropRun(t, nw, "linear", map[string][3][3]float64{"ebpf": {{600, 1, 1}, {600, 1, 1}, {600, 1, 1}}})
	c, err := Compare(base, nw, CompareOptions{Threshold: 0.05, Alpha: 0.2})
	require.NoError(t, err)
	assert.Zero(t, c.Regressions)
	found := false
	for _, ch := range c.Changes {
		if ch.Metric == stats.DropPoint.Name {
			found = true
			assert.NotEqual(t, VerdictRegression, ch.Verdict)
			assert.Contains(t, ch.Note, "censored in the new run")
			assert.Contains(t, ch.Note, "not a regression signal")
		}
	}
	assert.True(t, found)
}
