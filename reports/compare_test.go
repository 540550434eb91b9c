package reports

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	fx "github.com/edgebpf/edgebpf/reports/fixture"
)

// comparePair writes the fixture pair built to regress, improve and stay within noise,
// under fixed names so the golden files do not depend on temporary paths.
func comparePair(t *testing.T) (base, nw string) {
	t.Helper()
	root := t.TempDir()
	t.Chdir(root)
	require.NoError(t, fx.Compare("base", "new"))
	return "base", "new"
}

func TestCompareVerdicts(t *testing.T) {
	base, nw := comparePair(t)
	c, err := Compare(base, nw, CompareOptions{Threshold: 0.05})
	require.NoError(t, err)
	verdicts := map[string]string{}
	for _, ch := range c.Changes {
		verdicts[Entity{ch.Experiment, ch.DataPlane, ch.Metric, ch.X, ch.XUnit}.String()] = ch.Verdict
	}
	assert.Equal(t, VerdictRegression, verdicts["latency/direct rtt"], "20 % slower, significant")
	assert.Equal(t, VerdictRegression, verdicts["latency/userspace rtt"])
	assert.Equal(t, VerdictImprovement, verdicts["throughput/direct throughput"], "30 % faster")
	assert.Equal(t, VerdictSame, verdicts["jitter/direct jitter"], "same distribution")
	assert.Equal(t, VerdictSame, verdicts["resources/direct cpu @ load"], "1 %: significant but within the threshold")
	assert.Equal(t, VerdictSame, verdicts["bottleneck/direct loss @ 1.0 Mbit/s"], "0 stays 0")
	assert.Equal(t, 2, c.Regressions)
	assert.Equal(t, 2, c.Improvements)
	assert.Equal(t, []Entity{{Experiment: "latency", DataPlane: "nftables", Metric: "rtt"}}, c.OnlyBase)
	assert.Equal(t, []Entity{{Experiment: "speedlimit-droppoint", DataPlane: "ebpf", Metric: "drop_point"}}, c.OnlyNew)

	for _, ch := range c.Changes {
		if ch.Experiment == "resources" {
			assert.Less(t, ch.P, 0.05)
			assert.Contains(t, ch.Note, "within ±5 %")
		}
	}

	// A looser threshold turns the 20 % regression into noise; reversing the sides turns
	// improvements into regressions.
	c, err = Compare(base, nw, CompareOptions{Threshold: 0.25})
	require.NoError(t, err)
	assert.Zero(t, c.Regressions)
	assert.Equal(t, 2, c.Improvements)
	c, err = Compare(nw, base, CompareOptions{Threshold: 0.05})
	require.NoError(t, err)
	assert.Equal(t, 2, c.Regressions)
}

func TestCompareGolden(t *testing.T) {
	base, nw := comparePair(t)
	c, err := Compare(base, nw, CompareOptions{Threshold: 0.05})
	require.NoError(t, err)
	for _, f := range CompareFormats {
		var b bytes.Buffer
		require.NoError(t, WriteComparison(&b, c, f))
		ext := map[string]string{"text": "txt", "csv": "csv", "json": "json", "markdown": "md"}[f]
		golden(t, "compare."+ext, b.Bytes())
	}
	var b bytes.Buffer
	require.NoError(t, WriteComparison(&b, c, "json"))
	var back Comparison
	require.NoError(t, json.Unmarshal(b.Bytes(), &back))
	assert.Equal(t, c.Regressions, back.Regressions)
	assert.Error(t, WriteComparison(&b, c, "yaml"))
}

func TestCompareBadInput(t *testing.T) {
	base, nw := comparePair(t)
	head := strings.Join(Header, ",") + "\n"
	write := func(dir, exp, dp, body string) {
		p := RawPath(dir, exp, dp)
		require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o755))
		require.NoError(t, os.WriteFile(p, []byte(head+body), 0o644))
	}
	t.Run("not a results directory", func(t *testing.T) {
		_, err := Compare("nowhere", nw, CompareOptions{})
		var ie *InputError
		require.ErrorAs(t, err, &ie)
		assert.Contains(t, err.Error(), "baseline: "+filepath.Join("nowhere", "meta.json")+" does not exist: is nowhere an edgebpf results directory?")
	})
	t.Run("bad row names file and line", func(t *testing.T) {
		dir := t.TempDir()
		require.NoError(t, fx.Compare(dir, t.TempDir()))
		write(dir, "jitter", "direct", "jitter,direct,1,0,0,,,jitter,0.1,s\njitter,direct,x,0,0,,,jitter,0.1,s\n")
		_, err := Compare(dir, nw, CompareOptions{})
		var ie *InputError
		require.ErrorAs(t, err, &ie)
		assert.Contains(t, err.Error(), RawPath(dir, "jitter", "direct")+`:3: rep "x" is not an integer`)
	})
	t.Run("unit mismatch", func(t *testing.T) {
		a, b := t.TempDir(), t.TempDir()
		require.NoError(t, fx.Compare(a, b))
		write(a, "custom", "direct", "custom,direct,1,0,0,,,widgets,1,count\n")
		write(b, "custom", "direct", "custom,direct,1,0,0,,,widgets,1,bytes\n")
		_, err := Compare(a, b, CompareOptions{})
		var ie *InputError
		require.ErrorAs(t, err, &ie)
		assert.Contains(t, err.Error(), "custom/direct widgets is in count in the baseline but in bytes in the new run")
	})
	t.Run("no common experiment", func(t *testing.T) {
		a, b := t.TempDir(), t.TempDir()
		require.NoError(t, fx.Compare(a, b))
		require.NoError(t, os.RemoveAll(filepath.Join(b, "raw")))
		write(b, "other", "direct", "other,direct,1,0,0,,,rtt,1,s\n")
		_, err := Compare(a, b, CompareOptions{})
		var ie *InputError
		require.ErrorAs(t, err, &ie)
		assert.Contains(t, err.Error(), "have no experiment in common")
	})
	t.Run("empty run", func(t *testing.T) {
		a := t.TempDir()
		require.NoError(t, WriteMeta(a, &Meta{}))
		_, err := Compare(a, base, CompareOptions{})
		assert.ErrorContains(t, err, "holds no raw samples")
	})
}

func TestCompareFromZero(t *testing.T) {
	a, b := t.TempDir(), t.TempDir()
	for i, dir := range []string{a, b} {
		require.NoError(t, WriteMeta(dir, &Meta{}))
		var rows strings.Builder
		rows.WriteString(strings.Join(Header, ",") + "\n")
		for rep := 1; rep <= 8; rep++ {
			loss := 0.0
			if i == 1 {
				loss = 1 + float64(rep)/10
			}
			rows.WriteString("jitter,direct," + strconv.Itoa(rep) + ",0,0,,,loss," + strconv.FormatFloat(loss, 'g', -1, 64) + ",percent\n")
		}
		require.NoError(t, os.MkdirAll(filepath.Dir(RawPath(dir, "jitter", "direct")), 0o755))
		require.NoError(t, os.WriteFile(RawPath(dir, "jitter", "direct"), []byte(rows.String()), 0o644))
	}
	c, err := Compare(a, b, CompareOptions{Threshold: 0.05})
	require.NoError(t, err)
	require.Len(t, c.Changes, 1)
	assert.Nil(t, c.Changes[0].Change, "no relative change from 0")
	assert.Equal(t, VerdictRegression, c.Changes[0].Verdict, "loss appearing from none is worse beyond any threshold")
	var buf bytes.Buffer
	require.NoError(t, WriteComparison(&buf, c, "text"))
	assert.Contains(t, buf.String(), "from 0")
}
