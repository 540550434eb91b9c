package reports

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	fx "github.com/edgebpf/edgebpf/reports/fixture"
)

// writePair writes base and new as two synthetic runs and returns their directories.
func writePair(t *testing.T, base, nw fx.Run) (string, string) {
	t.Helper()
	root := t.TempDir()
	a, b := filepath.Join(root, "base"), filepath.Join(root, "new")
	require.NoError(t, base.Write(a))
	require.NoError(t, nw.Write(b))
	return a, b
}

// pooledP is the p-value the first compare computed: Mann-Whitney on every sample pooled.
func pooledP(t *testing.T, a, b, exp, dp, metric string) float64 {
	t.Helper()
	sa, err := readSide(a, "baseline")
	require.NoError(t, err)
	sb, err := readSide(b, "new run")
	require.NoError(t, err)
	k := cmpKey{exp, dp, metric, ""}
	p, ok := mannWhitney(sa.groups[k].values, sb.groups[k].values)
	require.True(t, ok)
	return p
}

// TestCompareAA compares eight A/A pairs: the same distribution, 8 repetitions of 200
// samples a side, repetitions drifting by 3 % around it, samples by 5 % around their
// repetition. Tested on repetitions at most one pair has a regression; tested on pooled
// samples, as the first compare did, most pairs differ "significantly".
func TestCompareAA(t *testing.T) {
	alarms, pooledSignificant := 0, 0
	for i := range uint64(8) {
		a, b := writePair(t, fx.Run{Seed: 100 + 2*i, Samples: 200}, fx.Run{Seed: 101 + 2*i, Samples: 200})
		c, err := Compare(a, b, CompareOptions{Threshold: 0.05})
		require.NoError(t, err)
		require.Len(t, c.Changes, 4)
		if c.Regressions > 0 {
			alarms++
		}
		for _, ch := range c.Changes {
			assert.Equal(t, 8, ch.BaseReps)
			assert.Equal(t, 1600, ch.BaseN)
			assert.NotEqual(t, VerdictTooFewReps, ch.Verdict)
			require.NotNil(t, ch.Change)
			require.NotNil(t, ch.ChangeLo)
			assert.LessOrEqual(t, *ch.ChangeLo, *ch.Change)
			assert.GreaterOrEqual(t, *ch.ChangeHi, *ch.Change)
			require.NotNil(t, ch.MDC)
			if ch.P < 0.05 {
				continue
			}
			assert.Contains(t, ch.Note, "no change detected; nothing under")
		}
		if pooledP(t, a, b, "latency", "direct", "rtt") < 0.05 {
			pooledSignificant++
		}
	}
	t.Logf("A/A: %d of 8 pairs with a regression; pooled samples: %d of 8 significant", alarms, pooledSignificant)
	assert.LessOrEqual(t, alarms, 1, "at most one false alarm in eight A/A pairs")
	assert.GreaterOrEqual(t, pooledSignificant, 4, "the pooled test calls drift between repetitions significant")
}

// TestComparePower worsens RTT and throughput by 10 % with 8 repetitions a side.
func TestComparePower(t *testing.T) {
	flagged := 0
	for i := range uint64(8) {
		a, b := writePair(t, fx.Run{Seed: 100 + 2*i}, fx.Run{Seed: 101 + 2*i, Worsen: 0.10})
		c, err := Compare(a, b, CompareOptions{Threshold: 0.05})
		require.NoError(t, err)
		if c.Regressions == len(c.Changes) {
			flagged++
		}
		for _, ch := range c.Changes {
			if ch.Verdict == VerdictRegression {
				assert.Less(t, ch.P, 0.05)
				assert.Greater(t, *ch.Change*map[string]float64{"lower": 1, "higher": -1}[ch.Better], 0.05)
			}
		}
	}
	t.Logf("power: %d of 8 pairs with every 10 %% worsening flagged", flagged)
	assert.GreaterOrEqual(t, flagged, 7)

	a, b := writePair(t, fx.Run{Seed: 1}, fx.Run{Seed: 2, Worsen: 0.10})
	c, err := Compare(a, b, CompareOptions{Threshold: 0.05})
	require.NoError(t, err)
	assert.Equal(t, 4, c.Regressions)
	var buf bytes.Buffer
	require.NoError(t, WriteComparison(&buf, c, "text"))
	assert.Contains(t, buf.String(), "4 regressions")
}

func TestCompareTooFewReps(t *testing.T) {
	a, b := writePair(t, fx.Run{Seed: 1, Reps: 3}, fx.Run{Seed: 2, Reps: 3, Worsen: 0.3})
	c, err := Compare(a, b, CompareOptions{Threshold: 0.05})
	require.NoError(t, err)
	assert.Zero(t, c.Regressions, "no verdict, so no regression: compare exits 0")
	assert.Equal(t, 4, c.TooFewReps)
	for _, ch := range c.Changes {
		assert.Equal(t, VerdictTooFewReps, ch.Verdict)
		assert.InDelta(t, 0.1, ch.MinP, 1e-9)
		assert.Equal(t, "3 and 3 repetitions: Mann-Whitney cannot reach p < 0.05 (smallest p 0.1); run at least 4 a side", ch.Note)
		assert.Nil(t, ch.MDC, "nothing is detectable")
		assert.Contains(t, ch.Flags, FlagInsensitive)
		require.NotNil(t, ch.Change, "the change is still estimated")
	}
	var buf bytes.Buffer
	require.NoError(t, WriteComparison(&buf, c, "text"))
	assert.Contains(t, buf.String(), "4 with too few reps")

	// Four a side can reach 0.05, and a 30 % worsening does.
	a, b = writePair(t, fx.Run{Seed: 1, Reps: 4}, fx.Run{Seed: 2, Reps: 4, Worsen: 0.3})
	c, err = Compare(a, b, CompareOptions{Threshold: 0.05})
	require.NoError(t, err)
	assert.Equal(t, 4, c.Regressions)
	assert.Zero(t, c.TooFewReps)
	// A stricter alpha needs more.
	c, err = Compare(a, b, CompareOptions{Threshold: 0.05, Alpha: 0.01})
	require.NoError(t, err)
	assert.Equal(t, 4, c.TooFewReps)
	assert.Contains(t, c.Changes[0].Note, "run at least 5 a side")
}

func TestCompareNoisyFlag(t *testing.T) {
	a, b := writePair(t, fx.Run{Seed: 1, RepDrift: 0.2}, fx.Run{Seed: 2, RepDrift: 0.2})
	c, err := Compare(a, b, CompareOptions{Threshold: 0.05})
	require.NoError(t, err)
	assert.Equal(t, len(c.Changes), c.Unfit)
	for _, ch := range c.Changes {
		assert.Contains(t, ch.Flags, FlagNoisy)
		assert.Contains(t, ch.Flags, FlagInsensitive)
	}
	a, b = writePair(t, fx.Run{Seed: 1, RepDrift: -1, Noise: 0.01}, fx.Run{Seed: 2, RepDrift: -1, Noise: 0.01})
	c, err = Compare(a, b, CompareOptions{Threshold: 0.05})
	require.NoError(t, err)
	assert.Zero(t, c.Unfit, "a quiet run is fit for gating")
}

func TestCompareGuard(t *testing.T) {
	t.Run("profile differs", func(t *testing.T) {
		a, b := writePair(t, fx.Run{Seed: 1}, fx.Run{Seed: 2, Profile: "full"})
		_, err := Compare(a, b, CompareOptions{Threshold: 0.05})
		var ie *InputError
		require.ErrorAs(t, err, &ie)
		var me *MismatchError
		require.ErrorAs(t, err, &me)
		assert.Equal(t, []string{"profile (quick vs full)"}, me.Differences)
		assert.Equal(t, "baseline and new run differ in profile (quick vs full): compare runs of the same configuration, or compare anyway with --force", err.Error())

		c, err := Compare(a, b, CompareOptions{Threshold: 0.05, Force: true})
		require.NoError(t, err)
		assert.True(t, c.Forced)
		assert.Equal(t, []string{"profile (quick vs full)"}, c.Differences)
		var buf bytes.Buffer
		require.NoError(t, WriteComparison(&buf, c, "text"))
		assert.Contains(t, buf.String(), "forced: compared although the runs differ in profile (quick vs full)\n")
		buf.Reset()
		require.NoError(t, WriteComparison(&buf, c, "markdown"))
		assert.Contains(t, buf.String(), "- forced: compared although")
	})
	t.Run("parameters differ", func(t *testing.T) {
		a, b := writePair(t, fx.Run{Seed: 1, Params: map[string]any{"count": 100, "size": 64}},
			fx.Run{Seed: 2, Params: map[string]any{"count": 200, "size": 64}})
		_, err := Compare(a, b, CompareOptions{Threshold: 0.05})
		var me *MismatchError
		require.ErrorAs(t, err, &me)
		assert.Equal(t, []string{"latency count (100 vs 200)", "throughput count (100 vs 200)"}, me.Differences,
			"named once per experiment, not per data plane")
	})
	t.Run("topology and schema differ", func(t *testing.T) {
		a, b := writePair(t, fx.Run{Seed: 1}, fx.Run{Seed: 2})
		m, err := ReadMeta(b)
		require.NoError(t, err)
		m.Topology["mtu"] = 9000
		m.Schema = 2
		require.NoError(t, WriteMeta(b, m))
		_, err = Compare(a, b, CompareOptions{})
		var me *MismatchError
		require.ErrorAs(t, err, &me)
		assert.Equal(t, []string{"results schema (1 vs 2)", "topology mtu (1450 vs 9000)"}, me.Differences,
			"a meta.json without schema is version 1")
	})
	t.Run("placement differs", func(t *testing.T) {
		a, b := writePair(t, fx.Run{Seed: 1}, fx.Run{Seed: 2})
		pin := func(dir, placement string, pinning map[string]string) {
			m, err := ReadMeta(dir)
			require.NoError(t, err)
			for i := range m.Experiments {
				if m.Experiments[i].Name == "latency" {
					m.Experiments[i].Placement, m.Experiments[i].Pinning = placement, pinning
				}
			}
			require.NoError(t, WriteMeta(dir, m))
		}
		pin(a, "apart", map[string]string{"client": "0", "server": "1"})
		_, err := Compare(a, b, CompareOptions{Threshold: 0.05})
		var me *MismatchError
		require.ErrorAs(t, err, &me)
		assert.Equal(t, []string{"latency placement (apart vs none)"}, me.Differences, "named once, not per data plane")

		pin(b, "apart", map[string]string{"client": "1", "server": "0"})
		c, err := Compare(a, b, CompareOptions{Threshold: 0.05})
		require.NoError(t, err, "the same placement on other CPUs compares")
		assert.Equal(t, []string{`latency pinning differs ({"client":"0","server":"1"} vs {"client":"1","server":"0"})`}, c.Warnings)
	})
	t.Run("kernel differs", func(t *testing.T) {
		a, b := writePair(t, fx.Run{Seed: 1}, fx.Run{Seed: 2, Kernel: "6.19.0"})
		c, err := Compare(a, b, CompareOptions{Threshold: 0.05})
		require.NoError(t, err)
		assert.False(t, c.Forced)
		assert.Equal(t, []string{"kernel differs (6.18.0-fixture vs 6.19.0)"}, c.Warnings)
		var buf bytes.Buffer
		require.NoError(t, WriteComparison(&buf, c, "text"))
		assert.Contains(t, buf.String(), "warning: kernel differs (6.18.0-fixture vs 6.19.0)\n")
		buf.Reset()
		require.NoError(t, WriteComparison(&buf, c, "json"))
		var back struct {
			Warnings []string `json:"warnings"`
			Forced   bool     `json:"forced"`
		}
		require.NoError(t, json.Unmarshal(buf.Bytes(), &back))
		assert.Equal(t, c.Warnings, back.Warnings)
	})
	t.Run("machine differs", func(t *testing.T) {
		a, b := writePair(t, fx.Run{Seed: 1}, fx.Run{Seed: 2})
		m, err := ReadMeta(b)
		require.NoError(t, err)
		m.Host.CPUModel, m.Host.Cores, m.Host.Governor = "Other CPU", 4, "powersave"
		m.Pinning = map[string]string{"client": "0"}
		require.NoError(t, WriteMeta(b, m))
		c, err := Compare(a, b, CompareOptions{})
		require.NoError(t, err)
		assert.Equal(t, []string{
			"CPU model differs (Synthetic CPU @ 2.40GHz vs Other CPU)", "core count differs (2 vs 4)",
			`pinning differs (none vs {"client":"0"})`, "governor differs (performance vs powersave)",
		}, c.Warnings)
	})
	t.Run("same", func(t *testing.T) {
		a, b := writePair(t, fx.Run{Seed: 1}, fx.Run{Seed: 2})
		c, err := Compare(a, b, CompareOptions{})
		require.NoError(t, err)
		assert.False(t, c.Forced)
		assert.Empty(t, c.Differences)
		assert.Equal(t, []string{}, c.Warnings)
		_, err = os.Stat(filepath.Join(a, "meta.json"))
		require.NoError(t, err)
	})
}
