package scenarios

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/edgebpf/edgebpf/dataplanes"
	"github.com/edgebpf/edgebpf/dataplanes/direct"
	"github.com/edgebpf/edgebpf/dataplanes/ebpf"
	"github.com/edgebpf/edgebpf/dataplanes/nftables"
	"github.com/edgebpf/edgebpf/dataplanes/userspace"
	"github.com/edgebpf/edgebpf/internal/testenv"
	"github.com/edgebpf/edgebpf/netsetup"
	"github.com/edgebpf/edgebpf/reports"
)

// withCrossRegistry makes the runner offer the data planes, "hop" (direct under another
// name, so that direct+hop is a mixed subject of two routed workers) and "stay" (direct under
// another name that says it does not cross workers).
func withCrossRegistry(t *testing.T) {
	old := registry
	hop, stay := direct.Spec, direct.Spec
	hop.Name, stay.Name, stay.CrossNode = "hop", "stay", false
	hop.New = func() dataplanes.DataPlane { return renamed{direct.New(), "hop"} }
	stay.New = func() dataplanes.DataPlane { return renamed{direct.New(), "stay"} }
	registry = func() dataplanes.Registry {
		return dataplanes.Registry{direct.Spec, hop, stay, userspace.Spec, ebpf.Spec, nftables.Spec}
	}
	t.Cleanup(func() { registry = old })
}

// renamed is a data plane under another name.
type renamed struct {
	dataplanes.DataPlane
	name string
}

func (r renamed) Name() string { return r.name }

func TestCrossNodeRun(t *testing.T) {
	testenv.RequirePrivileged(t)
	withCrossRegistry(t)
	dir := t.TempDir()
	meta, err := Run(context.Background(), RunOptions{
		Experiments: []string{"latency", "throughput", "resources"}, Profile: "smoke", Out: dir,
		DataPlanes: []string{"direct", "direct+hop", "userspace", "nftables", "ebpf", "stay"},
		Topology:   Topology{Kind: CrossNode},
		Overrides:  Overrides{Duration: 900 * time.Millisecond},
	})
	require.NoError(t, err)
	assert.Equal(t, "done", meta.Status)

	status := map[string]reports.ExperimentMeta{}
	for _, e := range meta.Experiments {
		status[e.Name+"/"+e.DataPlane] = e
	}
	require.Len(t, status, 18)
	crossing := []string{"direct", "direct+hop", "userspace", "nftables", "ebpf"}
	for _, exp := range []string{"latency", "throughput", "resources"} {
		for _, dp := range crossing {
			assert.Equal(t, "done", status[exp+"@cross-node/"+dp].Status, "%s on %s: %s", exp, dp, status[exp+"@cross-node/"+dp].Error)
		}
		st := status[exp+"@cross-node/stay"]
		assert.Equal(t, "skipped", st.Status)
		assert.Contains(t, st.SkipReason, "data plane stay does not carry traffic between workers")
	}

	// meta.json: the topology, with what was shaped, and which data plane each worker ran.
	got, err := reports.ReadMeta(dir)
	require.NoError(t, err)
	assert.Equal(t, CrossNode, got.Topology["kind"])
	assert.EqualValues(t, 2, got.Topology["workers"])
	assert.Equal(t, map[string]any{"client": 0.0, "server": 1.0}, got.Topology["placement"])
	assert.Equal(t, "unshaped", got.Topology["underlay_shaping"])
	assert.EqualValues(t, 1500, got.Topology["underlay_mtu"])
	assert.EqualValues(t, 1450, got.Topology["overlay_mtu"])
	settings := map[string]map[string]string{}
	for _, d := range got.DataPlanes {
		settings[d.Name] = d.Settings
	}
	assert.Equal(t, map[string]string{"worker0": "direct", "worker1": "hop"}, settings["direct+hop"])
	assert.NotEmpty(t, settings["ebpf"], "each worker's data plane records its own settings")

	entries, err := reports.ReadSummary(dir)
	require.NoError(t, err)
	rtt := map[string]float64{}
	for _, e := range entries {
		assert.True(t, strings.HasSuffix(e.Experiment, "@cross-node"), e.Experiment)
		if e.Metric == "rtt" {
			rtt[e.DataPlane] = e.Median
		}
	}
	for _, dp := range crossing {
		assert.Positive(t, rtt[dp], dp)
	}

	md, err := os.ReadFile(filepath.Join(dir, "summary.md"))
	require.NoError(t, err)
	assert.Contains(t, string(md), "cross-node")
}

func TestClusterPlacesServicesOnWorkers(t *testing.T) {
	testenv.RequirePrivileged(t)
	sess := testenv.Session(t)
	tp := Topology{Kind: CrossNode, Workers: 3, Placement: Placement{"server": 2}}.resolved()
	specs := []dataplanes.Spec{direct.Spec, direct.Spec, direct.Spec}
	c, err := BuildCluster(context.Background(), sess, tp.clusterConfig(netsetup.NodeConfig{}, "direct"), specs, tp.Placement)
	require.NoError(t, err)
	t.Cleanup(func() { assert.NoError(t, c.Close()) })
	require.NoError(t, c.addServices())
	assert.Equal(t, "x-direct-w0", c.Client.Node)
	assert.Equal(t, "x-direct-w2", c.Server.Node)
	assert.Equal(t, c.Server.NSIP, c.Target, "direct addresses the server's namespace IP")
	assert.True(t, c.Workers[2].Config().Subnet.Contains(c.Target), "on worker 2's subnet, reached only over the underlay")
	require.NoError(t, c.Alive())
	require.NoError(t, c.removeServices())
	_, ok := c.Workers[1].Registry.Service("server")
	assert.False(t, ok, "removed from every worker")
}

// TestWorkerDiesMidRun deletes a worker's namespace while a cross-node repetition runs: the
// run records the failure naming the namespace, removes everything (TestMain's leak check),
// and returns an error.
func TestWorkerDiesMidRun(t *testing.T) {
	testenv.RequirePrivileged(t)
	withCrossRegistry(t)
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	killed := make(chan string, 1)
	go func() { killed <- killWorker(ctx, "x-direct-w1") }()
	start := time.Now()
	meta, err := Run(ctx, RunOptions{
		Experiments: []string{"jitter"}, Profile: "smoke", Out: dir, DataPlanes: []string{"direct"},
		Topology: Topology{Kind: CrossNode}, Overrides: Overrides{Duration: 20 * time.Second, Reps: 1},
	})
	victim := <-killed
	require.NotEmpty(t, victim, "the worker's namespace never appeared")
	require.Error(t, err)
	assert.False(t, errors.Is(err, ErrInterrupted))
	assert.Less(t, time.Since(start), 15*time.Second, "the repetition stops when the worker dies, not at its end")
	assert.Equal(t, "failed", meta.Status)
	require.Len(t, meta.Experiments, 1)
	assert.Equal(t, "failed", meta.Experiments[0].Status)
	assert.Contains(t, meta.Experiments[0].Error, victim+" is gone")
	_, statErr := os.Stat(filepath.Join("/run/netns", victim))
	assert.True(t, os.IsNotExist(statErr))
}

// killWorker waits for a namespace named edgebpf-<id>-<worker> of a session this process
// created (another run on the machine may have a worker of that name) and deletes it as `ip
// netns delete` does; it returns the namespace's name, or "" if none appeared.
func killWorker(ctx context.Context, worker string) string {
	for ctx.Err() == nil {
		var m []string
		for _, id := range netsetup.CreatedSessionIDs() {
			found, _ := filepath.Glob("/run/netns/" + netsetup.Prefix + id + "-" + worker)
			m = append(m, found...)
		}
		if len(m) == 1 {
			time.Sleep(1500 * time.Millisecond) // into the repetition
			name := filepath.Base(m[0])
			if err := unix.Unmount(m[0], unix.MNT_DETACH); err != nil {
				return ""
			}
			if err := os.Remove(m[0]); err != nil {
				return ""
			}
			return name
		}
		time.Sleep(20 * time.Millisecond)
	}
	return ""
}

// TestBothTopologiesInterleave runs latency on one node and across workers in one run: the
// repetitions of both interleave, and the report sets them side by side.
func TestBothTopologiesInterleave(t *testing.T) {
	testenv.RequirePrivileged(t)
	dir := t.TempDir()
	meta, err := Run(context.Background(), RunOptions{
		Experiments: []string{"latency"}, Profile: "smoke", Out: dir, DataPlanes: []string{"direct", "userspace"},
		Topology: Topology{Kind: CrossNode + "," + SameNode}, Overrides: Overrides{Reps: 2},
	})
	require.NoError(t, err)
	require.Len(t, meta.Experiments, 4)
	byName := map[string]reports.ExperimentMeta{}
	for _, e := range meta.Experiments {
		require.Equal(t, "done", e.Status, "%s/%s: %s", e.Name, e.DataPlane, e.Error)
		require.Len(t, e.RepTimes, 2)
		byName[e.Name+"/"+e.DataPlane] = e
	}
	same, cross := byName["latency/direct"], byName["latency@cross-node/direct"]
	assert.True(t, cross.RepTimes[0].Started.Before(same.RepTimes[1].Started), "rep 1 across workers runs before rep 2 on one node")
	assert.True(t, same.RepTimes[0].Started.Before(cross.RepTimes[1].Started))
	assert.Equal(t, "same-node,cross-node", meta.Topology["kind"])
	assert.NotNil(t, meta.Topology["same_node"])

	md, err := os.ReadFile(filepath.Join(dir, "summary.md"))
	require.NoError(t, err)
	assert.Contains(t, string(md), "What crossing workers costs")
}
