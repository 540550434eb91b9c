package reports

import (
	"bytes"
	"encoding/json"
	"flag"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/edgebpf/edgebpf/subjects"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/edgebpf/edgebpf/internal/host"
	"github.com/edgebpf/edgebpf/stats"
)

var update = flag.Bool("update", false, "rewrite golden files under testdata/")

// testdataDir is absolute, so that tests which change directory still find it.
var testdataDir = func() string {
	d, err := filepath.Abs("testdata")
	if err != nil {
		panic(err)
	}
	return d
}()

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join(testdataDir, name)
	if *update {
		require.NoError(t, os.WriteFile(path, got, 0o644))
	}
	want, err := os.ReadFile(path)
	require.NoError(t, err, "run go test ./reports -update to create %s", path)
	assert.Equal(t, string(want), string(got), "golden file %s differs (go test ./reports -update rewrites it)", path)
}

// fixture is a small run: latency on two data planes and a two-rate bottleneck curve.
func fixture() (lat, latB, sweep []stats.Sample) {
	for i, v := range []float64{100e-6, 120e-6, 110e-6, 130e-6, 90e-6, 105e-6, 115e-6} {
		lat = append(lat, stats.Sample{Rep: 1 + i/4, Seq: i % 4, T: float64(i) * 0.01, Metric: stats.RTT, Value: v})
		latB = append(latB, stats.Sample{Rep: 1, Seq: i, T: float64(i) * 0.01, Metric: stats.RTT, Value: 2 * v})
	}
	for _, r := range []string{"50000000", "500000000"} {
		for i := range 6 {
			sweep = append(sweep, stats.Sample{Rep: 1, Seq: i, T: float64(i) / 3, X: r, XUnit: "bit/s", Metric: stats.OWD, Value: 1e-5 * float64(i+1)})
		}
		sweep = append(sweep, stats.Sample{Rep: 1, X: r, XUnit: "bit/s", Metric: stats.Loss, Value: 0.5})
	}
	return
}

func writeFixture(t *testing.T) string {
	dir := t.TempDir()
	lat, latB, sweep := fixture()
	require.NoError(t, WriteRaw(dir, "latency", "direct", lat))
	require.NoError(t, WriteRaw(dir, "latency", "userspace", latB))
	require.NoError(t, WriteRaw(dir, "bottleneck", "direct", sweep))
	return dir
}

func TestRawGoldenAndRoundTrip(t *testing.T) {
	dir := writeFixture(t)
	b, err := os.ReadFile(RawPath(dir, "bottleneck", "direct"))
	require.NoError(t, err)
	golden(t, "bottleneck-direct.csv", b)

	rows, err := ReadRaw(dir)
	require.NoError(t, err)
	require.Len(t, rows, 7+7+14)
	_, _, sweep := fixture()
	assert.Equal(t, Rows("bottleneck", "direct", sweep), rows[:14], "values survive the CSV exactly")
}

func TestSummaryGolden(t *testing.T) {
	dir := writeFixture(t)
	entries, err := WriteSummary(dir, subjects.All())
	require.NoError(t, err)
	require.Len(t, entries, 2+2+1+1)
	js, err := os.ReadFile(filepath.Join(dir, "summary.json"))
	require.NoError(t, err)
	golden(t, "summary.json", js)
	md, err := os.ReadFile(filepath.Join(dir, "summary.md"))
	require.NoError(t, err)
	golden(t, "summary.md", md)

	back, err := ReadSummary(dir)
	require.NoError(t, err)
	assert.Equal(t, entries, back)
	// Ordered as the run's meta.json lists experiments, else by name; curves by x.
	assert.Equal(t, "bottleneck", back[0].Experiment)
	assert.Equal(t, XValue("50000000"), back[0].X)
	assert.Equal(t, XValue("500000000"), back[1].X)
	assert.Equal(t, "lower", back[0].Better)
	assert.Equal(t, "latency", back[4].Experiment)
	assert.Equal(t, 110e-6, back[4].Median)

	require.NoError(t, WriteMeta(dir, &Meta{Experiments: []ExperimentMeta{{Name: "latency"}, {Name: "bottleneck"}}}))
	entries, err = WriteSummary(dir, subjects.All())
	require.NoError(t, err)
	assert.Equal(t, "latency", entries[0].Experiment)
	assert.Equal(t, "userspace", entries[1].DataPlane)
}

func TestDecodeRawErrorsNameFileAndLine(t *testing.T) {
	head := strings.Join(Header, ",") + "\n"
	cases := map[string]string{
		head + "latency,direct,1,0,0,,,rtt,abc,s\n":             "r.csv:2: value \"abc\" is not a number",
		head + "latency,direct,1,0,0,,,rtt,1\n":                 "wrong number of fields",
		"experiment,dataplane\n":                                "header",
		head + "latency,direct,1,0,0,,,rtt,1,ms\n":              `r.csv:2: metric rtt has unit "ms", want "s"`,
		head + "latency,direct,1,0,0,,,rtt,1,s\n,,1,0,0,,,,1,s": "r.csv:3: experiment, dataplane and metric must not be empty",
	}
	for in, want := range cases {
		_, err := DecodeRaw(strings.NewReader(in), "r.csv")
		require.Error(t, err)
		assert.Contains(t, err.Error(), want)
	}
}

func TestSummaryKeepsGoodFilesWhenOneIsBad(t *testing.T) {
	dir := writeFixture(t)
	bad := RawPath(dir, "jitter", "direct")
	require.NoError(t, os.MkdirAll(filepath.Dir(bad), 0o755))
	require.NoError(t, os.WriteFile(bad, []byte("nonsense\n"), 0o644))
	entries, err := WriteSummary(dir, subjects.All())
	require.Error(t, err)
	assert.Contains(t, err.Error(), bad)
	assert.Len(t, entries, 6, "the good files are still summarised")
}

func TestSummaryNeverHoldsNaN(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, WriteRaw(dir, "x", "direct", []stats.Sample{{Metric: stats.RTT, Value: math.NaN()}}))
	_, err := WriteSummary(dir, subjects.All())
	require.NoError(t, err)
	b, err := os.ReadFile(filepath.Join(dir, "summary.json"))
	require.NoError(t, err)
	assert.False(t, bytes.Contains(b, []byte(": NaN")))
	var v []map[string]any
	require.NoError(t, json.Unmarshal(b, &v))
	assert.EqualValues(t, 0, v[0]["n"])
}

func TestMetaRoundTrip(t *testing.T) {
	dir := t.TempDir()
	m := &Meta{Tool: "edgebpf", Host: host.Collect(), Profile: "smoke", Status: "done",
		Experiments: []ExperimentMeta{{Name: "latency", DataPlane: "direct", Meter: "tcpping", Reps: 1, Params: map[string]any{"count": 5.0}, Status: "done"}}}
	require.NoError(t, WriteMeta(dir, m))
	back, err := ReadMeta(dir)
	require.NoError(t, err)
	assert.Equal(t, m.Experiments, back.Experiments)
	assert.NotEmpty(t, back.Host.Kernel)
	assert.Positive(t, back.Host.Cores)
	_, err = ReadMeta(t.TempDir())
	assert.ErrorContains(t, err, "an edgebpf results directory?")
}

func TestFormatValue(t *testing.T) {
	assert.Equal(t, "12.7 µs", FormatValue(12.7e-6, "s"))
	assert.Equal(t, "4.660 ms", FormatValue(4.66e-3, "s"))
	assert.Equal(t, "21.20 Gbit/s", FormatValue(21.2e9, "bit/s"))
	assert.Equal(t, "250.0 Mbit/s", FormatValue(250e6, "bit/s"))
	assert.Equal(t, "1.6 MiB", FormatValue(1.6*(1<<20), "bytes"))
	assert.Equal(t, "–", FormatValue(math.NaN(), "s"))
	assert.Equal(t, "load", FormatX("load", "phase"))
}
