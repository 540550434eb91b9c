package scenarios

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/edgebpf/edgebpf/internal/cpupin"
	"github.com/edgebpf/edgebpf/internal/features"
	"github.com/edgebpf/edgebpf/internal/host/probe"
	"github.com/edgebpf/edgebpf/internal/testenv"
	"github.com/edgebpf/edgebpf/netsetup"
	"github.com/edgebpf/edgebpf/reports"
)

func TestScheduleInterleaves(t *testing.T) {
	assert.Equal(t, []step{{0, 1}, {1, 1}, {2, 1}, {0, 2}, {1, 2}, {2, 2}}, schedule([]int{2, 2, 2}, false))
	assert.Equal(t, []step{{0, 0}, {1, 0}, {0, 1}, {1, 1}, {0, 2}, {1, 2}}, schedule([]int{2, 2}, true), "warm-ups first")
	assert.Equal(t, []step{{0, 1}, {1, 1}, {1, 2}, {1, 3}}, schedule([]int{1, 3}, false), "uneven repetitions")
	assert.Empty(t, schedule(nil, true))
}

// allOK is a probe report with every feature available.
func allOK() features.Report {
	var r features.Report
	for _, n := range features.All {
		r.Set(n, true, "test")
	}
	return r
}

// TestMissingFeatureSkipsTheRightJobs checks the mapping from features to experiments and
// data planes: each missing feature skips exactly the jobs that need it, with the reason.
func TestMissingFeatureSkipsTheRightJobs(t *testing.T) {
	planes := []string{"direct", "ebpf", "nftables", "userspace"}
	cases := map[features.Name]func(v Verdict) bool{
		features.TCX:      func(v Verdict) bool { return v.DataPlane == "ebpf" && !v.Configuration },
		features.BTF:      func(v Verdict) bool { return v.DataPlane == "ebpf" && !v.Configuration },
		features.XDP:      func(v Verdict) bool { return v.Configuration && v.DataPlane != "userspace" },
		features.BPF:      func(v Verdict) bool { return v.DataPlane == "ebpf" || v.DataPlane == "mixed" },
		features.TUN:      func(v Verdict) bool { return v.DataPlane == "userspace" && !v.Configuration },
		features.NFTables: func(v Verdict) bool { return v.DataPlane == "nftables" },
		features.Sockperf: func(v Verdict) bool { return v.Experiment == "calibration" },
		features.Iperf3:   func(v Verdict) bool { return v.Experiment == "calibration" },
		features.Netns:    func(Verdict) bool { return true },
		features.Veth:     func(Verdict) bool { return true },
		features.Bridge:   func(Verdict) bool { return true },
	}
	require.Len(t, cases, len(features.All), "every feature is tested")
	vs, err := Feasibility(Builtin(), planes, allOK())
	require.NoError(t, err)
	require.Len(t, vs, 8*4+4*3) // eight experiments over the data planes (latency-rr, calibration and scale included), four over the configurations
	for _, v := range vs {
		assert.Empty(t, v.Reason, "%s/%s", v.Experiment, v.DataPlane)
	}
	for name, affected := range cases {
		r := allOK()
		r.Set(name, false, "forced missing by the test")
		vs, err := Feasibility(Builtin(), planes, r)
		require.NoError(t, err)
		n := 0
		for _, v := range vs {
			if affected(v) {
				n++
				assert.Equal(t, "this machine lacks "+string(name)+" (forced missing by the test)", v.Reason, "%s: %s/%s", name, v.Experiment, v.DataPlane)
			} else {
				assert.Empty(t, v.Reason, "%s: %s/%s", name, v.Experiment, v.DataPlane)
			}
		}
		assert.NotZero(t, n, name)
	}
}

// TestRunInterleavesAndSkips runs latency on two data planes with two repetitions while the
// probe pretends nftables is missing: direct and userspace run in A B A B order (meta.json's
// per-repetition times), nftables is skipped with the reason in meta.json, summary.md and
// index.html, and the run is done.
func TestRunInterleavesAndSkips(t *testing.T) {
	testenv.RequirePrivileged(t)
	probeFeatures = func(s *netsetup.Session) features.Report {
		r := probe.Features(s)
		r.Set(features.NFTables, false, "forced missing by the test")
		return r
	}
	t.Cleanup(func() { probeFeatures = probe.Features })
	dir := t.TempDir()
	meta, err := Run(context.Background(), RunOptions{Experiments: []string{"latency"}, Profile: "smoke",
		DataPlanes: []string{"direct", "nftables", "userspace"}, Overrides: Overrides{Reps: 2}, Out: dir})
	require.NoError(t, err)
	assert.Equal(t, "done", meta.Status)
	require.Len(t, meta.Experiments, 3)
	a, skipped, b := meta.Experiments[0], meta.Experiments[1], meta.Experiments[2]
	assert.Equal(t, "done", a.Status)
	assert.Equal(t, "done", b.Status)
	assert.Equal(t, "skipped", skipped.Status)
	assert.Equal(t, "this machine lacks nftables (forced missing by the test)", skipped.SkipReason)
	assert.Empty(t, skipped.RepTimes)

	// A B A B: each repetition starts after the one before it ended, across data planes.
	require.Len(t, a.RepTimes, 2)
	require.Len(t, b.RepTimes, 2)
	order := []reports.RepMeta{a.RepTimes[0], b.RepTimes[0], a.RepTimes[1], b.RepTimes[1]}
	for i := 1; i < len(order); i++ {
		assert.False(t, order[i].Started.Before(order[i-1].Ended), "repetition %d started before %d ended", i, i-1)
	}
	assert.Equal(t, []int{1, 2}, []int{a.RepTimes[0].Rep, a.RepTimes[1].Rep})
	assert.Nil(t, a.Warmup, "no warm-up in smoke")

	// Raw CSVs of both data planes, both repetitions; none for the skipped one.
	rows, err := reports.ReadRaw(dir)
	require.NoError(t, err)
	reps := map[string][]int{}
	for _, r := range rows {
		if !slices.Contains(reps[r.DataPlane], r.Rep) {
			reps[r.DataPlane] = append(reps[r.DataPlane], r.Rep)
		}
	}
	assert.Equal(t, map[string][]int{"direct": {1, 2}, "userspace": {1, 2}}, reps)

	// The features and the reason are recorded and shown.
	saved, err := reports.ReadMeta(dir)
	require.NoError(t, err)
	require.Len(t, saved.Features, len(features.All))
	assert.NotNil(t, saved.StartLoad)
	md, err := os.ReadFile(filepath.Join(dir, "summary.md"))
	require.NoError(t, err)
	assert.Contains(t, string(md), "| latency | nftables | skipped: this machine lacks nftables (forced missing by the test) |")
	page, err := os.ReadFile(filepath.Join(dir, "index.html"))
	require.NoError(t, err)
	assert.Contains(t, string(page), "latency on nftables: skipped: this machine lacks nftables (forced missing by the test)")
	assert.True(t, strings.Contains(string(page), "Kernel and machine features"))
}

// TestRunPlacesApart checks that an experiment with the apart placement pins its client and
// server to two CPUs when the run pins neither, records it, and that --cpu-client overrides
// it.
func TestRunPlacesApart(t *testing.T) {
	testenv.RequirePrivileged(t)
	allowed, err := cpupin.Allowed()
	require.NoError(t, err)
	if len(allowed.CPUs()) < 2 {
		t.Skip("placement apart needs two CPUs")
	}
	meta, err := Run(context.Background(), RunOptions{Experiments: []string{"latency-rr", "latency"}, Profile: "smoke", Out: t.TempDir()})
	require.NoError(t, err)
	require.Len(t, meta.Experiments, 2)
	rr, connect := meta.Experiments[0], meta.Experiments[1]
	require.Equal(t, "latency-rr", rr.Name)
	assert.Equal(t, PlacementApart, rr.Placement)
	require.Len(t, rr.Pinning, 2)
	assert.NotEqual(t, rr.Pinning["client"], rr.Pinning["server"])
	assert.Empty(t, connect.Placement, "latency keeps the scheduler's placement")
	assert.Empty(t, connect.Pinning)
	assert.Empty(t, meta.Pinning, "the run itself pinned nothing")

	first := strconv.Itoa(allowed.CPUs()[0])
	meta, err = Run(context.Background(), RunOptions{Experiments: []string{"latency-rr"}, Profile: "smoke", Out: t.TempDir(),
		CPUs: cpupin.Plan{cpupin.Client: must(cpupin.Parse(first))}})
	require.NoError(t, err)
	assert.Empty(t, meta.Experiments[0].Placement)
	assert.Equal(t, map[string]string{"client": first}, meta.Experiments[0].Pinning)
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// TestRunWarmsUpUnrecorded checks that the warm-up runs first on every data plane and
// leaves no samples.
func TestRunWarmsUpUnrecorded(t *testing.T) {
	testenv.RequirePrivileged(t)
	dir := t.TempDir()
	on := true
	meta, err := Run(context.Background(), RunOptions{Experiments: []string{"latency"}, Profile: "smoke",
		DataPlanes: []string{"direct", "userspace"}, Warmup: &on, Out: dir})
	require.NoError(t, err)
	require.True(t, meta.Warmup.Enabled)
	a, b := meta.Experiments[0], meta.Experiments[1]
	require.NotNil(t, a.Warmup)
	require.NotNil(t, b.Warmup)
	assert.True(t, b.Warmup.Ended.Before(a.RepTimes[0].Started), "both warm-ups come before the first repetition")
	rows, err := reports.ReadRaw(dir)
	require.NoError(t, err)
	for _, r := range rows {
		assert.Equal(t, 1, r.Rep, "only the recorded repetition is in raw/")
	}
	assert.Less(t, time.Duration(0), a.Warmup.Ended.Sub(a.Warmup.Started))
}

// TestRunBPFStats checks that --bpf-stats records, per repetition, the run time per packet of
// the eBPF data plane's programs that ran, and nothing for a data plane without programs.
func TestRunBPFStats(t *testing.T) {
	testenv.RequirePrivileged(t)
	dir := t.TempDir()
	meta, err := Run(context.Background(), RunOptions{Experiments: []string{"latency"}, Profile: "smoke",
		DataPlanes: []string{"direct", "ebpf"}, Overrides: Overrides{Reps: 2, BPFStats: true}, Out: dir})
	require.NoError(t, err)
	assert.True(t, meta.BPFStats)
	rows, err := reports.ReadRaw(dir)
	require.NoError(t, err)
	perRep := map[string][]int{}
	for _, r := range rows {
		if !strings.HasPrefix(r.Metric, "bpf_ns_per_pkt:") {
			continue
		}
		assert.Equal(t, "ebpf", r.DataPlane, "only the eBPF data plane runs BPF programs")
		assert.Positive(t, r.Value, r.Metric)
		assert.Equal(t, "ns", r.Unit)
		perRep[r.Metric] = append(perRep[r.Metric], r.Rep)
	}
	// Every connect sends through the proxy's ingress program on the client's veth.
	assert.Equal(t, []int{1, 2}, perRep["bpf_ns_per_pkt:proxy_ingress"], "%v", perRep)
}

// TestRunThatCannotWriteItsReportFails checks that a run whose report files could not all be
// written says which, exits with an error and leaves meta.json saying so rather than "done"
// (here the plots directory cannot be created: a file of that name is in its way).
func TestRunThatCannotWriteItsReportFails(t *testing.T) {
	testenv.RequirePrivileged(t)
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, reports.PlotsDir), []byte("in the way"), 0o644))
	meta, err := Run(context.Background(), RunOptions{Experiments: []string{"latency"}, Profile: "smoke", Out: dir})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "incomplete")
	assert.Contains(t, err.Error(), reports.PlotsDir+"/")
	assert.Equal(t, "incomplete", meta.Status)
	onDisk, rerr := reports.ReadMeta(dir)
	require.NoError(t, rerr)
	assert.Equal(t, "incomplete", onDisk.Status, "meta.json on disk is up to date")
	assert.Equal(t, "done", onDisk.Experiments[0].Status, "what was measured is kept")
	_, serr := os.Stat(filepath.Join(dir, reserveName))
	assert.ErrorIs(t, serr, os.ErrNotExist, "the space reserve is gone after the run")
}

// TestReserveFreesRoomForMeta checks that writing meta.json falls back on the reserve: once
// released, its space is there for the write.
func TestReserveFreesRoomForMeta(t *testing.T) {
	dir := t.TempDir()
	out, err := reserveSpace(dir)
	require.NoError(t, err)
	fi, err := os.Stat(filepath.Join(dir, reserveName))
	require.NoError(t, err)
	assert.EqualValues(t, reserveSize, fi.Size())
	require.NoError(t, out.writeMeta(&reports.Meta{Status: "running"}))
	out.release()
	_, err = os.Stat(filepath.Join(dir, reserveName))
	assert.ErrorIs(t, err, os.ErrNotExist)
	assert.Equal(t, []string{"summary.json", "summary.md", "index.html"}, out.missing(nil))
}
