package bench

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/edgebpf/edgebpf/stats"
)

func TestResourcesLoopback(t *testing.T) {
	tcpCheckLeaks(t)
	const rate = 50e6
	cfg := ResourcesConfig{
		Idle: Duration(300 * time.Millisecond), Load: Duration(400 * time.Millisecond), Cleanup: Duration(300 * time.Millisecond),
		Interval: Duration(100 * time.Millisecond), LoadRate: rate, Port: 25220,
		Processes: []string{sysmonSelfComm()},
	}
	samples, err := Resources(context.Background(), tcpLoopback(), cfg)
	require.NoError(t, err)

	// Phases come in order, each with CPU samples.
	order := []string{PhaseIdle, PhaseLoad, PhaseCleanup}
	cpus := map[string]int{}
	last := 0
	for i, s := range samples {
		require.Contains(t, order, s.X, "sample %d: %+v", i, s)
		assert.Equal(t, PhaseUnit, s.XUnit)
		p := slices.Index(order, s.X)
		assert.GreaterOrEqual(t, p, last, "sample %d: phase %q after %q", i, s.X, order[last])
		last = p
		if i > 0 {
			assert.GreaterOrEqual(t, s.T, samples[i-1].T, "ordered by T")
		}
		if s.Metric == stats.CPU {
			cpus[s.X]++
			assert.GreaterOrEqual(t, s.Value, 0.0)
			assert.LessOrEqual(t, s.Value, 100.0)
		}
	}
	for _, p := range order {
		assert.GreaterOrEqual(t, cpus[p], 2, "CPU samples in phase %q", p)
	}
	assert.NotEmpty(t, tcpSamplesOf(samples, stats.RAM))

	load := tcpSamplesOf(samples, stats.Throughput)
	require.Len(t, load, 4, "one throughput sample per interval of the load phase")
	for _, s := range load {
		assert.Equal(t, PhaseLoad, s.X)
		assert.Greater(t, s.T, 0.3, "T counts from the start of the experiment")
	}
	// A sanity band, not a performance threshold.
	assert.InDelta(t, rate, tcpMean(load), rate/2)
	// The load generator runs in this process, so its CPU time shows.
	var loadCPU float64
	for _, s := range tcpSamplesOf(samples, stats.CPUProcess) {
		if s.X == PhaseLoad {
			loadCPU = max(loadCPU, s.Value)
		}
	}
	assert.Greater(t, loadCPU, 0.0)
}

func TestResourcesCancel(t *testing.T) {
	tcpCheckLeaks(t)
	ctx, cancel := context.WithCancel(context.Background())
	// 1 s into the load phase: long enough for a loaded machine to have started the stream and
	// sampled it a few times.
	cancelled := make(chan time.Time, 1)
	time.AfterFunc(1200*time.Millisecond, func() { cancelled <- time.Now(); cancel() })
	samples, err := Resources(ctx, tcpLoopback(), ResourcesConfig{
		Idle: Duration(200 * time.Millisecond), Load: Duration(time.Minute), Cleanup: Duration(time.Minute),
		Interval: Duration(100 * time.Millisecond), Port: 25221,
	})
	require.ErrorIs(t, err, context.Canceled)
	assert.Less(t, time.Since(<-cancelled), 2*time.Second, "stops soon after the cancel")
	assert.NotEmpty(t, tcpSamplesOf(samples, stats.CPU), "partial results are kept")
	assert.NotEmpty(t, tcpSamplesOf(samples, stats.Throughput), "partial load results are kept")
}

func TestResourcesValidate(t *testing.T) {
	assert.NoError(t, ResourcesConfig{}.Validate())
	for _, tc := range []struct {
		cfg  ResourcesConfig
		want string
	}{
		{ResourcesConfig{Idle: Duration(-time.Second)}, "idle phase -1s is negative"},
		{ResourcesConfig{Load: Duration(-time.Second)}, "load phase -1s is negative"},
		{ResourcesConfig{Cleanup: Duration(-time.Second)}, "cleanup phase -1s is negative"},
		{ResourcesConfig{Interval: Duration(time.Millisecond)}, "give at least 10ms"},
		{ResourcesConfig{Load: Duration(time.Second), Interval: Duration(2 * time.Second)}, "load phase 1s is shorter than interval 2s"},
		{ResourcesConfig{LoadRate: -5}, "load rate -5 bit/s cannot be paced"},
		{ResourcesConfig{Processes: []string{""}}, "process name 0 is empty"},
	} {
		err := tc.cfg.Validate()
		require.Error(t, err, "%+v", tc.cfg)
		assert.Contains(t, err.Error(), tc.want)
	}
	_, err := Resources(context.Background(), tcpLoopback(), ResourcesConfig{Idle: -1})
	assert.Error(t, err)
}
