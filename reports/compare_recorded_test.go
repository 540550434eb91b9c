package reports

import (
	"cmp"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/edgebpf/edgebpf/stats"
)

var recordAA = flag.String("record-aa", "", "rebuild testdata/aa from the ci runs in this folder (a1..a8, b1..b8: direct,ebpf; u1, u2: direct,userspace)")

// aaDir holds real ci-profile runs of this machine (README, "Regression gates in CI"): eight
// A/A pairs aI/bI of one binary with the direct and ebpf data planes, minutes apart, pairs
// 6-8 while a busy loop loaded a core, and two runs uI of direct and userspace. Each
// repetition's samples are stored reduced to the metric's per-repetition aggregate
// (stats.AggregateOf), which is all that compare tests; meta.json is as the run wrote it but
// for the experiments' per-repetition times (rep_times), which compare does not read.
const aaDir = "testdata/aa"

// aaPairs are the A/A pairs.
const aaPairs = 8

// worsening is the synthetic regression of the power test: the new side's ebpf throughput
// down and every round trip time (connect and request-response) up by a tenth.
type worsening struct{ throughput, rtt bool }

func (w worsening) apply(r *Row) {
	switch base, _, _ := strings.Cut(r.Metric, ":"); {
	case r.DataPlane != "ebpf":
	case w.throughput && r.Metric == "throughput" && r.Experiment == "throughput":
		r.Value *= 0.9
	case w.rtt && base == "rtt":
		r.Value *= 1.1
	}
}

// worsened reports whether w changes the rows of ch.
func (w worsening) worsened(ch Change) bool {
	r := Row{Experiment: ch.Experiment, DataPlane: ch.DataPlane, Metric: ch.Metric, Value: 1}
	w.apply(&r)
	return r.Value != 1
}

// TestRecordedAA checks the ci gate on the recorded runs, at the default threshold (5 %) and
// alpha (0.05), relative to direct as the CI recipe compares: (a) at most one A/A pair in 8
// has a regression; (b) with the new side's ebpf throughput and RTT worsened by 10 %, at
// least 7 of 8 pairs have one, and every worsened row that does not gate is flagged noisy or
// insensitive (no silent pass); (c) userspace against ebpf (about a sixth of the throughput)
// is a throughput regression in every combination, and the reverse an improvement.
func TestRecordedAA(t *testing.T) {
	if *recordAA != "" {
		recordAAFixtures(t, *recordAA)
	}
	opts := CompareOptions{Threshold: 0.05, RelativeTo: "direct"}
	alarms, absAlarms := 0, 0
	both, tputOnly, rttOnly := worsening{true, true}, worsening{throughput: true}, worsening{rtt: true}
	power := map[worsening][]int{} // the pairs in which the worsening gated
	for i := 1; i <= aaPairs; i++ {
		a, b := filepath.Join(aaDir, fmt.Sprint("a", i)), filepath.Join(aaDir, fmt.Sprint("b", i))
		c, err := Compare(a, b, opts)
		require.NoError(t, err)
		require.NotEmpty(t, c.Changes)
		if c.Regressions > 0 {
			alarms++
			t.Logf("A/A pair %d: false alarm: %s", i, regressed(c))
		}
		abs, err := Compare(a, b, CompareOptions{Threshold: 0.05})
		require.NoError(t, err)
		if abs.Regressions > 0 {
			absAlarms++
			t.Logf("A/A pair %d without --relative-to: false alarm: %s", i, regressed(abs))
		}

		for _, w := range []worsening{both, tputOnly, rttOnly} {
			c, err := Compare(a, copyRun(t, b, w.apply), opts)
			require.NoError(t, err)
			// Caught: a worsened row gates (pair 8's A/A false alarm on an untouched row
			// does not count).
			caught := false
			for _, ch := range c.Changes {
				if !w.worsened(ch) {
					continue
				}
				if ch.Verdict == VerdictRegression && !strings.Contains(ch.Note, "not gated") {
					caught = true
					continue
				}
				// Not gated on: the gate must then have said why (no silent pass): too
				// insensitive to see 10 %, or too noisy to gate on.
				unfit := slices.Contains(ch.Flags, FlagNoisy) || slices.Contains(ch.Flags, FlagInsensitive) && *ch.MDC > 0.10
				require.True(t, unfit, "pair %d: a missed 10 %% worsening of %s/%s is flagged noisy or insensitive (flags %v, MDC %s)", i, ch.Experiment, ch.Metric, ch.Flags, ch.mdcString())
				if w == both {
					t.Logf("pair %d, 10 %% worsening of %s/%s: not gated (%s, p %.3g), flags %v: MDC %s, CV %s", i, ch.Experiment, ch.Metric, ch.Verdict, ch.P, ch.Flags, ch.mdcString(), ch.cvString())
				}
			}
			if caught {
				power[w] = append(power[w], i)
			}
		}
	}
	t.Logf("A/A false alarms: %d of %d pairs relative to direct, %d of %d absolute; 10 %% worsening flagged in %d of %d (throughput alone in pairs %v, RTT alone in pairs %v)",
		alarms, aaPairs, absAlarms, aaPairs, len(power[both]), aaPairs, power[tputOnly], power[rttOnly])
	require.LessOrEqual(t, alarms, 1, "A/A pairs flagged with a regression")
	require.GreaterOrEqual(t, len(power[both]), 7, "10 %% worsenings of throughput and RTT flagged")
	// RTT carries the power: the busy request-response RTT of 64 repetitions a side, whose
	// ebpf/direct ratio stays within a few percent in the repetitions no burst of load spoilt.
	// Throughput alone is caught in none: these recordings (2026-11-30, load average 6 - 27
	// from other engineers' builds, tests and fuzzers, pairs 6 - 8 with a busy loop too:
	// testdata/aa/runs.log) spread its per-repetition ratio by 22 - 150 % (CV), so its
	// minimum detectable change is 13 - 37 % and the noisy row gates only on p below alpha
	// over the rows. The figures are deterministic on the recorded data: they guard the
	// statistics.
	require.GreaterOrEqual(t, len(power[rttOnly]), 7, "10 %% worsenings of RTT alone flagged")

	for _, u := range []string{"u1", "u2"} {
		userspace := copyRun(t, filepath.Join(aaDir, u), func(r *Row) {
			if r.DataPlane == "userspace" {
				r.DataPlane = "ebpf"
			}
		})
		for i := 1; i <= aaPairs; i++ {
			ebpf := filepath.Join(aaDir, fmt.Sprint("a", i))
			for _, dir := range [][2]string{{ebpf, userspace}, {userspace, ebpf}} {
				c, err := Compare(dir[0], dir[1], opts)
				require.NoError(t, err)
				want := VerdictRegression
				if dir[0] == userspace {
					want = VerdictImprovement
				}
				ch := findChange(t, c, "throughput", "throughput")
				require.Equal(t, want, ch.Verdict, "%s against a%d: change %s, p %.3g", u, i, ch.changeString(), ch.P)
			}
		}
	}
}

func regressed(c *Comparison) string {
	var out []string
	for _, ch := range c.Changes {
		if ch.Verdict == VerdictRegression {
			out = append(out, fmt.Sprintf("%s/%s %s %s %s (p %.3g)", ch.Experiment, ch.DataPlane, ch.Metric, ch.X, ch.changeString(), ch.P))
		}
	}
	return strings.Join(out, "; ")
}

func findChange(t *testing.T, c *Comparison, exp, metric string) Change {
	t.Helper()
	i := slices.IndexFunc(c.Changes, func(ch Change) bool { return ch.Experiment == exp && ch.Metric == metric })
	require.GreaterOrEqual(t, i, 0, "%s %s compared", exp, metric)
	return c.Changes[i]
}

// copyRun copies the results directory src to a temporary one, changing every raw row with
// edit.
func copyRun(t *testing.T, src string, edit func(*Row)) string {
	t.Helper()
	dst := t.TempDir()
	meta, err := os.ReadFile(filepath.Join(src, "meta.json"))
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dst, "meta.json"), meta, 0o644))
	rows, err := ReadRaw(src)
	require.NoError(t, err)
	for i := range rows {
		edit(&rows[i])
	}
	writeRows(t, dst, rows)
	return dst
}

// writeRows writes rows as raw CSV files below dir, one per experiment and data plane.
func writeRows(t *testing.T, dir string, rows []Row) {
	t.Helper()
	files := map[[2]string][]Row{}
	for _, r := range rows {
		k := [2]string{r.Experiment, r.DataPlane}
		files[k] = append(files[k], r)
	}
	for k, rs := range files {
		path := RawPath(dir, k[0], k[1])
		require.NoError(t, os.MkdirAll(filepath.Dir(path), 0o755))
		f, err := os.Create(path)
		require.NoError(t, err)
		require.NoError(t, EncodeRaw(f, rs))
		require.NoError(t, f.Close())
	}
}

// recordAAFixtures rebuilds aaDir from the ci runs in from: meta.json as it is, and every
// repetition's samples reduced to one row holding the metric's per-repetition aggregate.
func recordAAFixtures(t *testing.T, from string) {
	require.NoError(t, os.RemoveAll(aaDir))
	var runs []string
	for i := 1; i <= aaPairs; i++ {
		runs = append(runs, fmt.Sprint("a", i), fmt.Sprint("b", i))
	}
	for _, run := range append(runs, "u1", "u2") {
		src, dst := filepath.Join(from, run), filepath.Join(aaDir, run)
		require.NoError(t, os.MkdirAll(dst, 0o755))
		writeTrimmedMeta(t, filepath.Join(src, "meta.json"), filepath.Join(dst, "meta.json"))
		rows, err := ReadRaw(src)
		require.NoError(t, err)
		type key struct{ exp, dp, metric, x, xUnit, unit string }
		groups := map[key]*cmpGroup{}
		for _, r := range rows {
			k := key{r.Experiment, r.DataPlane, r.Metric, r.X, r.XUnit, r.Unit}
			if groups[k] == nil {
				groups[k] = &cmpGroup{}
			}
			groups[k].reps = append(groups[k].reps, r.Rep)
			groups[k].values = append(groups[k].values, r.Value)
		}
		var out []Row
		for k, g := range groups {
			for _, rv := range stats.RepValues(g.reps, g.values, stats.AggregateOf(k.metric)) {
				out = append(out, Row{Experiment: k.exp, DataPlane: k.dp, Rep: rv.Rep, X: k.x, XUnit: k.xUnit, Metric: k.metric, Value: rv.Value, Unit: k.unit})
			}
		}
		slices.SortFunc(out, func(a, b Row) int {
			return cmp.Or(cmp.Compare(a.Experiment, b.Experiment), cmp.Compare(a.DataPlane, b.DataPlane),
				cmp.Compare(a.Metric, b.Metric), cmp.Compare(a.X, b.X), cmp.Compare(a.Rep, b.Rep))
		})
		writeRows(t, dst, out)
	}
}

// writeTrimmedMeta copies the meta.json src to dst without the experiments' rep_times.
func writeTrimmedMeta(t *testing.T, src, dst string) {
	b, err := os.ReadFile(src)
	require.NoError(t, err)
	var meta map[string]any
	require.NoError(t, json.Unmarshal(b, &meta))
	exps, _ := meta["experiments"].([]any)
	for _, e := range exps {
		if m, ok := e.(map[string]any); ok {
			delete(m, "rep_times")
		}
	}
	b, err = json.MarshalIndent(meta, "", "  ")
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(dst, append(b, '\n'), 0o644))
}
