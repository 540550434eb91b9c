package scenarios

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/edgebpf/edgebpf/bench"
	"github.com/edgebpf/edgebpf/internal/testenv"
	"github.com/edgebpf/edgebpf/netsetup"
	"github.com/edgebpf/edgebpf/reports"
	"github.com/edgebpf/edgebpf/subjects"
)

// TestResourcesDeploysAtPhaseBorders runs the resources experiment's smoke profile on direct
// and the eBPF proxy and checks that every repetition records its deploy at the border of Idle
// and Load and its undeploy at the border of Load and Cleanup, and that the load ran through
// the deployed services.
func TestResourcesDeploysAtPhaseBorders(t *testing.T) {
	testenv.RequirePrivileged(t)
	dir := t.TempDir()
	meta, err := Run(context.Background(), RunOptions{Experiments: []string{"resources"}, Profile: "smoke",
		DataPlanes: []string{"direct", "ebpf"}, Overrides: Overrides{Reps: 2}, Out: dir})
	require.NoError(t, err)
	require.Equal(t, "done", meta.Status)
	rows, err := reports.ReadRaw(dir)
	require.NoError(t, err)
	type key struct {
		dp  string
		rep int
	}
	type borders struct {
		lastIdle, firstLoad, lastLoad, firstCleanup float64
		deploy, undeploy                            []float64
		load                                        int
	}
	got := map[key]*borders{}
	for _, r := range rows {
		k := key{r.DataPlane, r.Rep}
		b := got[k]
		if b == nil {
			b = &borders{firstLoad: 1e9, firstCleanup: 1e9}
			got[k] = b
		}
		switch {
		case r.Metric == "lifecycle" && r.X == bench.EventDeploy:
			assert.Equal(t, bench.EventUnit, r.XUnit)
			b.deploy = append(b.deploy, r.T)
		case r.Metric == "lifecycle" && r.X == bench.EventUndeploy:
			b.undeploy = append(b.undeploy, r.T)
		case r.Metric == "throughput":
			b.load++
		case r.Metric == "cpu" && r.X == bench.PhaseIdle:
			b.lastIdle = max(b.lastIdle, r.T)
		case r.Metric == "cpu" && r.X == bench.PhaseLoad:
			b.firstLoad, b.lastLoad = min(b.firstLoad, r.T), max(b.lastLoad, r.T)
		case r.Metric == "cpu" && r.X == bench.PhaseCleanup:
			b.firstCleanup = min(b.firstCleanup, r.T)
		}
	}
	for _, dp := range []string{"direct", "ebpf"} {
		for rep := 1; rep <= 2; rep++ {
			b := got[key{dp, rep}]
			require.NotNil(t, b, "%s rep %d has rows", dp, rep)
			require.Len(t, b.deploy, 1, "%s rep %d: one deploy", dp, rep)
			require.Len(t, b.undeploy, 1, "%s rep %d: one undeploy", dp, rep)
			// A CPU sample's t is the end of its interval.
			assert.GreaterOrEqual(t, b.deploy[0], b.lastIdle, "%s rep %d: deployed after idle", dp, rep)
			assert.Less(t, b.deploy[0], b.firstLoad, "%s rep %d: deployed as load began", dp, rep)
			assert.GreaterOrEqual(t, b.undeploy[0], b.lastLoad, "%s rep %d: undeployed after load", dp, rep)
			assert.Less(t, b.undeploy[0], b.firstCleanup, "%s rep %d: undeployed as cleanup began", dp, rep)
			assert.Positive(t, b.load, "%s rep %d: the load ran through the deployed services", dp, rep)
		}
	}
}

// TestNodeServicesLeaveNothing deploys and removes a node's services twice on direct and the
// eBPF proxy: traffic flows while they are deployed, and once removed the registry is empty
// and no instance namespace (with it no veth and no TCX link) is left.
func TestNodeServicesLeaveNothing(t *testing.T) {
	sess := testenv.Session(t)
	for _, plane := range []string{"direct", "ebpf"} {
		t.Run(plane, func(t *testing.T) {
			spec, err := subjects.DataPlanes().Lookup(plane)
			require.NoError(t, err)
			n, err := buildNode(context.Background(), sess, netsetup.NodeConfig{Name: "lc-" + plane}, spec, false)
			require.NoError(t, err)
			t.Cleanup(func() { assert.NoError(t, n.Close()) })
			assert.Empty(t, n.Registry.Services(), "the node starts without services")
			lc := nodeServices{n}
			for round := range 2 {
				ep, err := lc.Deploy(context.Background())
				require.NoError(t, err, "round %d", round)
				samples, err := bench.ConnectRTT(context.Background(), ep, bench.ConnectConfig{Count: 3, Interval: bench.Duration(10 * time.Millisecond), Port: 25230})
				require.NoError(t, err, "round %d: connects through the deployed services", round)
				assert.NotEmpty(t, samples)
				require.NoError(t, lc.Undeploy(), "round %d", round)
				assert.Empty(t, n.Registry.Services(), "round %d: no service left", round)
				left, err := os.ReadDir("/run/netns")
				require.NoError(t, err)
				for _, e := range left {
					assert.False(t, strings.HasPrefix(e.Name(), n.NS.Name+"-"), "round %d: namespace %s left behind", round, e.Name())
				}
			}
			require.NoError(t, lc.Undeploy(), "undeploying again does nothing")
		})
	}
}
