package reports

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/edgebpf/edgebpf/subjects"
)

// TestResourcesFiguresMarkTheLifecycle adds the deploy and undeploy moments of the resources
// experiment for direct and ebpf to a fixture and checks that the CPU and RAM figures mark
// them, and that a data plane without them (userspace) is left unmarked.
func TestResourcesFiguresMarkTheLifecycle(t *testing.T) {
	dir := thesisFixture(t)
	rows, err := ReadRaw(dir)
	require.NoError(t, err)
	type key struct {
		dp  string
		rep int
	}
	firstLoad, firstCleanup := map[key]float64{}, map[key]float64{}
	for _, r := range rows {
		if r.Experiment != expResources || r.Metric != "cpu" {
			continue
		}
		k := key{r.DataPlane, r.Rep}
		for _, p := range []struct {
			first map[key]float64
			phase string
		}{{firstLoad, "load"}, {firstCleanup, "cleanup"}} {
			if t, ok := p.first[k]; r.X == p.phase && (!ok || r.T < t) {
				p.first[k] = r.T
			}
		}
	}
	for _, dp := range []string{"direct", "ebpf"} {
		f, err := os.OpenFile(RawPath(dir, expResources, dp), os.O_APPEND|os.O_WRONLY, 0)
		require.NoError(t, err)
		for k, t0 := range firstLoad {
			if k.dp == dp {
				// A sample's t is its interval's end: the deploy began in the interval before.
				_, err = fmt.Fprintf(f, "resources,%s,%d,0,%g,deploy,event,lifecycle,0.05,s\nresources,%s,%d,1,%g,undeploy,event,lifecycle,0.03,s\n",
					dp, k.rep, t0-0.4, dp, k.rep, firstCleanup[k]-0.4)
				require.NoError(t, err)
			}
		}
		require.NoError(t, f.Close())
	}
	_, err = Build(dir, subjects.All())
	require.NoError(t, err)
	svg := func(name string) string {
		b, err := os.ReadFile(filepath.Join(dir, "plots", name+".svg"))
		require.NoError(t, err)
		return string(b)
	}
	for _, name := range []string{"cpu-direct", "cpu-ebpf", "cpu-ewma", "ram"} {
		s := svg(name)
		assert.Contains(t, s, "services deployed / removed", name)
		assert.Contains(t, s, ">deploy<", name)
		assert.Contains(t, s, ">undeploy<", name)
	}
	assert.NotContains(t, svg("cpu-userspace"), "services deployed", "no lifecycle samples, no marker")

	ds, err := LoadDataset(dir, subjects.All())
	require.NoError(t, err)
	m := lifecycleMoments(ds, "direct")
	assert.Len(t, m[eventDeploy], len(m[eventUndeploy]))
	assert.NotEmpty(t, m[eventDeploy])
	for i := range m[eventDeploy] {
		assert.Less(t, m[eventDeploy][i], m[eventUndeploy][i])
	}
}
