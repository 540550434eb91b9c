package bench

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/edgebpf/edgebpf/stats"
)

func TestRequestResponseLoopback(t *testing.T) {
	tcpCheckLeaks(t)
	cfg := RRConfig{Port: 15211, BusyCount: 300, PacedCount: 10, Interval: Duration(time.Millisecond), Warmup: 5}
	samples, err := RequestResponse(context.Background(), tcpLoopback(), cfg)
	require.NoError(t, err)
	count := map[string]int{}
	for _, s := range samples {
		count[s.Metric.Name]++
		assert.Greater(t, s.Value, 0.0, "%s seq %d", s.Metric.Name, s.Seq)
		assert.Less(t, s.Value, 1.0, "%s seq %d", s.Metric.Name, s.Seq)
		m, ok := stats.Lookup(s.Metric.Name)
		require.True(t, ok, "%s is not in the catalogue", s.Metric.Name)
		assert.Equal(t, stats.RTT.Unit, m.Unit)
	}
	assert.Equal(t, map[string]int{
		"rtt:udp-rr-busy": 300, "rtt:udp-rr-paced": 10, "rtt:tcp-rr-busy": 300, "rtt:tcp-rr-paced": 10,
	}, count)
}

func TestRequestResponsePacedTakesItsSchedule(t *testing.T) {
	cfg := RRConfig{Port: 15212, Protocols: []string{RRUDP}, Modes: []string{RRPaced}, PacedCount: 20, Interval: Duration(5 * time.Millisecond), Warmup: 1}
	start := time.Now()
	samples, err := RequestResponse(context.Background(), tcpLoopback(), cfg)
	require.NoError(t, err)
	require.Len(t, samples, 20)
	// 21 round trips on an absolute schedule, one every 5 ms: the last cannot start before
	// 100 ms have passed.
	assert.GreaterOrEqual(t, time.Since(start), 100*time.Millisecond)
	for i := 1; i < len(samples); i++ {
		assert.Greater(t, samples[i].T, samples[i-1].T, "sample %d", i)
		assert.Equal(t, i, samples[i].Seq)
	}
}

func TestRequestResponseCancel(t *testing.T) {
	tcpCheckLeaks(t)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	cfg := RRConfig{Port: 15213, Protocols: []string{RRTCP}, Modes: []string{RRPaced}, PacedCount: 1000}
	start := time.Now()
	_, err := RequestResponse(ctx, tcpLoopback(), cfg)
	assert.ErrorIs(t, err, context.DeadlineExceeded)
	assert.Less(t, time.Since(start), 3*time.Second)
}

func TestRRConfigValidate(t *testing.T) {
	assert.NoError(t, RRConfig{}.Validate())
	for _, bad := range []RRConfig{
		{Protocols: []string{"sctp"}},
		{Modes: []string{"idle"}},
		{Size: 8},
		{Size: 9000},
		{BusyCount: -1},
		{Interval: Duration(-time.Second)},
		{Timeout: Duration(-time.Second)},
	} {
		assert.Error(t, bad.Validate(), "%+v", bad)
	}
}
