package bench

import (
	"context"
	"errors"
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
	samples, err := Resources(context.Background(), Deployed(tcpLoopback()), cfg)
	require.NoError(t, err)

	// Phases come in order, each with CPU samples.
	order := []string{PhaseIdle, PhaseLoad, PhaseCleanup}
	cpus := map[string]int{}
	last := 0
	for i, s := range samples {
		if s.Metric == stats.Lifecycle {
			continue
		}
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

// recordingLifecycle deploys loopback endpoints and records when it was called.
type recordingLifecycle struct {
	start              time.Time
	deploys, undeploys []float64 // seconds since start
	deployErr          error
}

func (l *recordingLifecycle) Deploy(context.Context) (Endpoints, error) {
	l.deploys = append(l.deploys, time.Since(l.start).Seconds())
	time.Sleep(20 * time.Millisecond) // a deploy takes time; its sample says how much
	return tcpLoopback(), l.deployErr
}

func (l *recordingLifecycle) Undeploy() error {
	l.undeploys = append(l.undeploys, time.Since(l.start).Seconds())
	return nil
}

// TestResourcesDeploysAtThePhaseBorders checks that the services are deployed once at the
// start of the load phase and removed once at the start of cleanup, and that both moments are
// recorded as lifecycle samples between the phases' samples.
func TestResourcesDeploysAtThePhaseBorders(t *testing.T) {
	tcpCheckLeaks(t)
	lc := &recordingLifecycle{start: time.Now()}
	samples, err := Resources(context.Background(), lc, ResourcesConfig{
		Idle: Duration(300 * time.Millisecond), Load: Duration(300 * time.Millisecond), Cleanup: Duration(300 * time.Millisecond),
		Interval: Duration(100 * time.Millisecond), Port: 25222,
	})
	require.NoError(t, err)
	require.Len(t, lc.deploys, 1)
	require.Len(t, lc.undeploys, 1)
	assert.Greater(t, lc.undeploys[0], lc.deploys[0])

	events := tcpSamplesOf(samples, stats.Lifecycle)
	require.Len(t, events, 2)
	dep, undep := events[0], events[1]
	assert.Equal(t, []string{EventDeploy, EventUndeploy}, []string{dep.X, undep.X})
	for _, e := range events {
		assert.Equal(t, EventUnit, e.XUnit)
	}
	assert.GreaterOrEqual(t, dep.Value, 0.02, "the deploy's duration")
	lastIdle, firstLoad, lastLoad, firstCleanup := -1.0, -1.0, -1.0, -1.0
	for _, s := range tcpSamplesOf(samples, stats.CPU) {
		switch s.X {
		case PhaseIdle:
			lastIdle = s.T
		case PhaseLoad:
			lastLoad = s.T
			if firstLoad < 0 {
				firstLoad = s.T
			}
		case PhaseCleanup:
			if firstCleanup < 0 {
				firstCleanup = s.T
			}
		}
	}
	// A sample's T is its interval's end: the deploy begins where idle's last interval ends
	// and before load's first ends; the same for the undeploy and cleanup.
	assert.GreaterOrEqual(t, dep.T, lastIdle)
	assert.Less(t, dep.T, firstLoad)
	assert.GreaterOrEqual(t, undep.T, lastLoad)
	assert.Less(t, undep.T, firstCleanup)
	for _, s := range tcpSamplesOf(samples, stats.Throughput) {
		assert.Greater(t, s.T, dep.T+dep.Value, "the load runs after the deploy")
		assert.Less(t, s.T, undep.T+0.05, "and ends before the undeploy")
	}
}

// TestResourcesUndeploysAFailedDeploy checks that a deploy that fails is undone and its
// error returned.
func TestResourcesUndeploysAFailedDeploy(t *testing.T) {
	lc := &recordingLifecycle{start: time.Now(), deployErr: errors.New("no room")}
	samples, err := Resources(context.Background(), lc, ResourcesConfig{
		Idle: Duration(100 * time.Millisecond), Load: Duration(100 * time.Millisecond), Cleanup: Duration(100 * time.Millisecond),
		Interval: Duration(50 * time.Millisecond), Port: 25223,
	})
	require.ErrorContains(t, err, "resources: deploy: no room")
	assert.Len(t, lc.undeploys, 1)
	assert.Len(t, tcpSamplesOf(samples, stats.Lifecycle), 2)
	assert.Empty(t, tcpSamplesOf(samples, stats.Throughput))
}

func TestResourcesCancel(t *testing.T) {
	tcpCheckLeaks(t)
	ctx, cancel := context.WithCancel(context.Background())
	// 1 s into the load phase: long enough for a loaded machine to have started the stream and
	// sampled it a few times.
	cancelled := make(chan time.Time, 1)
	time.AfterFunc(1200*time.Millisecond, func() { cancelled <- time.Now(); cancel() })
	samples, err := Resources(ctx, Deployed(tcpLoopback()), ResourcesConfig{
		Idle: Duration(200 * time.Millisecond), Load: Duration(time.Minute), Cleanup: Duration(time.Minute),
		Interval: Duration(100 * time.Millisecond), Port: 25221,
	})
	require.ErrorIs(t, err, context.Canceled)
	assert.Less(t, time.Since(<-cancelled), 2*time.Second, "stops soon after the cancel")
	assert.NotEmpty(t, tcpSamplesOf(samples, stats.CPU), "partial results are kept")
	assert.NotEmpty(t, tcpSamplesOf(samples, stats.Throughput), "partial load results are kept")
	assert.Len(t, tcpSamplesOf(samples, stats.Lifecycle), 2, "a cancelled load is undeployed")
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
	_, err := Resources(context.Background(), Deployed(tcpLoopback()), ResourcesConfig{Idle: -1})
	assert.Error(t, err)
	_, err = Resources(context.Background(), nil, ResourcesConfig{})
	assert.ErrorContains(t, err, "no lifecycle")
}

func TestResourcesSamplesTheProxyProcessByDefault(t *testing.T) {
	d := ResourcesConfig{}.withDefaults()
	assert.Equal(t, []string{sysmonSelfComm(), ProxyProcess}, d.Processes, "this process and the proxy's, apart")
	assert.NoError(t, SysmonConfig{Processes: d.Processes}.Validate())
	own := ResourcesConfig{Processes: []string{"nginx"}}.withDefaults()
	assert.Equal(t, []string{"nginx"}, own.Processes, "given names replace the default")
}
