package scenarios

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const estimateSuite = `{"experiments": [
  {"name": "latency", "source": "test", "description": "d", "meter": "connect-rtt", "profiles": {
    "smoke": {"reps": 1, "params": {"count": 5, "interval": "100ms"}},
    "quick": {"reps": 3, "params": {"count": 10, "interval": "1s"}},
    "full": {"reps": 3, "params": {"count": 10, "interval": "1s"}}}},
  {"name": "speedlimit-droppoint", "source": "test", "description": "d", "meter": "speedlimit-droppoint",
   "configurations": ["userspace", "ebpf"], "profiles": {
    "smoke": {"reps": 1, "params": {"start": 1, "max": 4, "requests": 100, "pause": "100ms", "timeout": "100ms"}},
    "quick": {"reps": 2, "params": {"start": 1, "max": 40, "requests": 1000, "pause": "1s", "timeout": "1s"}},
    "full": {"reps": 2, "params": {"start": 1, "max": 200, "requests": 1000, "pause": "1s", "timeout": "1s"}}}}
]}`

func TestDryRunEstimate(t *testing.T) {
	s, err := Parse(strings.NewReader(estimateSuite), "estimate.json")
	require.NoError(t, err)
	off := false
	ests, err := DryRun(RunOptions{Suite: s, Profile: "quick", DataPlanes: []string{"direct", "userspace"}, Warmup: &off})
	require.NoError(t, err)
	require.Len(t, ests, 2)

	// latency: 10 connects 1 s apart and the repetition's overhead, 3 repetitions on each of
	// two data planes, each on a node of its own.
	lat := ests[0]
	assert.Equal(t, 3, lat.Reps)
	require.Len(t, lat.Subjects, 2)
	assert.Equal(t, 10*time.Second+estRepOverhead, lat.Subjects[0].Rep)
	assert.Equal(t, 2*(estNodeSetup+3*(10*time.Second+estRepOverhead)), lat.Total)
	assert.Zero(t, lat.Warmup)

	// drop point, geometric up to the cap of 40 (user space drops only at 90 here): starts
	// of 1, 2, 4, 8, 16, 32 and 40 clients, 103 clients x 1000 requests at the user-space
	// rate, six pauses, and the server's fresh start. The XDP configuration runs the same
	// starts at its rate.
	dp := ests[1]
	require.Len(t, dp.Subjects, 2, "the configurations, whatever --dataplane says")
	user := estResponderStart + 6*time.Second + time.Duration(103*1000/estSLRate["userspace"]*float64(time.Second))
	xdp := estResponderStart + 6*time.Second + time.Duration(103*1000/estSLRate["ebpf"]*float64(time.Second))
	assert.Equal(t, "userspace", dp.Subjects[0].Name)
	assert.InDelta(t, user, dp.Subjects[0].Rep, float64(time.Millisecond))
	assert.InDelta(t, xdp, dp.Subjects[1].Rep, float64(time.Millisecond))
	assert.InDelta(t, 2*estNodeSetup+2*(user+xdp), dp.Total, float64(time.Millisecond))

	// With the warm-up, each subject's smoke run is added once.
	on := true
	warm, err := DryRun(RunOptions{Suite: s, Profile: "quick", DataPlanes: []string{"direct"}, Warmup: &on, Experiments: []string{"latency"}})
	require.NoError(t, err)
	assert.Equal(t, 500*time.Millisecond+estRepOverhead, warm[0].Warmup)
	assert.Equal(t, estNodeSetup+3*(10*time.Second+estRepOverhead)+warm[0].Warmup, warm[0].Total)
}

func TestEveryMeterHasAnEstimate(t *testing.T) {
	for _, e := range Builtin().Experiments {
		for p := range e.Profiles { // an experiment may have a subset of the profiles (ci)
			plan, err := e.Plan(p, Overrides{})
			require.NoError(t, err)
			_, ok := EstimateRep(plan.Params, "userspace")
			assert.True(t, ok, "%s/%s", e.Name, p)
		}
	}
}

func TestFullProfileFitsAWorkingDay(t *testing.T) {
	ests, err := DryRun(RunOptions{Profile: "full", DataPlanes: []string{"direct", "userspace", "ebpf", "nftables"}})
	require.NoError(t, err)
	var total time.Duration
	for _, e := range ests {
		total += e.Total
	}
	assert.LessOrEqual(t, total, 8*time.Hour, "the full profile on four data planes must fit a CloudLab reservation of a working day")
}
