package reports

import (
	"strconv"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/edgebpf/edgebpf/stats"
)

// TestScaleTableSlopes checks the scale table's slopes on synthetic curves with known slopes:
// deploy time 10 ms per 10x services, 1 ms per instance added, 2 ms per chained module.
func TestScaleTableSlopes(t *testing.T) {
	dir := t.TempDir()
	var samples []stats.Sample
	at := func(m stats.Metric, axis string, x int, v float64) {
		m.Name += ":" + axis
		samples = append(samples, stats.Sample{X: strconv.Itoa(x), XUnit: axis, Metric: m, Value: v})
	}
	for i, n := range []int{1, 10, 100, 1000} {
		at(stats.DeployTime, "services", n, 0.05+0.01*float64(i))
	}
	for _, n := range []int{1, 100, 200} {
		at(stats.CreateModuleTime, "instances", n, 0.001*float64(n))
	}
	for _, k := range []int{0, 2, 4, 8} {
		at(stats.AddInstanceTime, "modules", k, 0.1+0.002*float64(k))
	}
	require.NoError(t, WriteRaw(dir, expScale, "ebpf", samples))
	require.NoError(t, WriteRaw(dir, "latency", "direct", []stats.Sample{{Metric: stats.RTT, Value: 1e-4}}))
	ds, err := LoadDataset(dir, nil)
	require.NoError(t, err)
	require.NoError(t, ds.Err)
	tab := scaleTable(ds)
	require.NotNil(t, tab)
	require.Len(t, tab.Rows, 1)
	row := map[string]string{}
	for i, h := range tab.Header {
		row[h] = tab.Rows[0][i]
	}
	assert.Equal(t, "10.000 ms", row["deploy / 10x services"])
	assert.Equal(t, "100.000 ms", row["create module / 100 instances"])
	assert.Equal(t, "200.000 ms", row["create module, 200 instances"])
	assert.Equal(t, "108.000 ms", row["add instance, 4 modules"])
	assert.Equal(t, "–", row["RTT / module"], "no RTT samples on the modules axis")

	figs := scaleFigures(ds)
	var names []string
	for _, f := range figs {
		require.NotNil(t, f.p, f.skip)
		names = append(names, f.name)
	}
	assert.ElementsMatch(t, []string{"scale-deploy-time-services", "scale-create-module-time-instances", "scale-add-instance-time-modules"}, names)
}

// TestScaleWithoutExperiment checks that a run without the (optional) scale experiment has no
// scale table and no scale figure, drawn or skipped.
func TestScaleWithoutExperiment(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, WriteRaw(dir, "latency", "direct", []stats.Sample{{Metric: stats.RTT, Value: 1e-4}}))
	ds, err := LoadDataset(dir, nil)
	require.NoError(t, err)
	assert.Nil(t, scaleTable(ds))
	assert.Empty(t, scaleFigures(ds))
}
