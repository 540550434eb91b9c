package bench

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/edgebpf/edgebpf/stats"
)

func tcpMean(ss []stats.Sample) float64 {
	sum := 0.0
	for _, s := range ss {
		sum += s.Value
	}
	return sum / float64(len(ss))
}

func TestTCPThroughputLoopback(t *testing.T) {
	tcpCheckLeaks(t)
	for _, streams := range []int{1, 3} {
		cfg := TCPThroughputConfig{Port: 25210, Duration: Duration(600 * time.Millisecond), Interval: Duration(200 * time.Millisecond), Streams: streams, Omit: Duration(100 * time.Millisecond)}
		samples, err := TCPThroughput(context.Background(), tcpLoopback(), cfg)
		require.NoError(t, err, "streams %d", streams)
		require.Len(t, samples, 3, "streams %d: one sample per interval", streams)
		for i, s := range samples {
			assert.Equal(t, stats.Throughput, s.Metric)
			assert.Equal(t, i, s.Seq)
			assert.GreaterOrEqual(t, s.Value, 0.0, "streams %d interval %d", streams, i)
			assert.GreaterOrEqual(t, s.T, 0.3, "omit and earlier intervals come first")
		}
		// One interval may see nothing on a machine this loaded with other work; the stream
		// as a whole must have carried data.
		assert.Greater(t, tcpMean(samples), 0.0, "streams %d", streams)
		t.Logf("%d streams: mean %.2f Gbit/s", streams, tcpMean(samples)/1e9)
	}
}

func TestTCPThroughputRate(t *testing.T) {
	tcpCheckLeaks(t)
	const rate = 200e6
	for _, streams := range []int{1, 2} {
		cfg := TCPThroughputConfig{Port: 25211, Duration: Duration(time.Second), Interval: Duration(250 * time.Millisecond), Streams: streams, Rate: rate}
		samples, err := TCPThroughput(context.Background(), tcpLoopback(), cfg)
		require.NoError(t, err)
		require.Len(t, samples, 4)
		mean := tcpMean(samples)
		t.Logf("%d streams paced to %.0f Mbit/s: mean %.1f Mbit/s", streams, rate/1e6, mean/1e6)
		// A sanity band, not a performance threshold.
		assert.InDelta(t, rate, mean, rate/2, "streams %d", streams)
	}
}

func TestTCPThroughputCancel(t *testing.T) {
	tcpCheckLeaks(t)
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(500*time.Millisecond, cancel)
	begin := time.Now()
	samples, err := TCPThroughput(ctx, tcpLoopback(), TCPThroughputConfig{Port: 25212, Duration: Duration(time.Minute), Interval: Duration(100 * time.Millisecond), Streams: 2})
	require.ErrorIs(t, err, context.Canceled)
	assert.Less(t, time.Since(begin), 2*time.Second)
	assert.NotEmpty(t, samples, "partial results are kept")
	assert.Less(t, len(samples), 600)
}

func TestTCPThroughputNoServer(t *testing.T) {
	tcpCheckLeaks(t)
	ep := tcpLoopback()
	ep.Server = tcpFailingNS{}
	_, err := TCPThroughput(context.Background(), ep, TCPThroughputConfig{Port: 25213, Duration: Duration(time.Second)})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "start receiver")
}

func TestTCPThroughputIntervals(t *testing.T) {
	ms := time.Millisecond
	assert.Equal(t, []streamInterval{{250 * ms, true}, {500 * ms, true}, {750 * ms, true}, {1000 * ms, true}},
		streamIntervals(time.Second, 250*ms))
	assert.Equal(t, []streamInterval{{250 * ms, true}, {500 * ms, true}, {750 * ms, true}, {900 * ms, true}},
		streamIntervals(900*ms, 250*ms), "a tail of 150ms is at least half of 250ms")
	assert.Equal(t, []streamInterval{{250 * ms, true}, {500 * ms, true}, {750 * ms, true}, {1000 * ms, true}, {1100 * ms, false}},
		streamIntervals(1100*ms, 250*ms), "a tail of 100ms is dropped but still run")
	assert.Equal(t, []streamInterval{{time.Second, true}}, streamIntervals(time.Second, time.Second))
}

func TestTCPThroughputPacer(t *testing.T) {
	p := newPacer(8e6) // one byte per microsecond
	p.next = 0
	// Far behind schedule: at most pacerBurst of credit.
	now := monotonic()
	d := p.reserve(1000)
	assert.InDelta(t, float64(-pacerBurst), float64(d), float64(time.Millisecond))
	// Each reservation moves the schedule by the bytes' time.
	assert.InDelta(t, float64(now-pacerBurst+time.Millisecond), float64(p.next), float64(time.Millisecond))
	p.next = monotonic() + time.Hour
	assert.Greater(t, p.reserve(1), 59*time.Minute, "ahead of schedule: wait")
}

func TestTCPThroughputValidate(t *testing.T) {
	assert.NoError(t, TCPThroughputConfig{}.Validate(), "zero values take defaults")
	assert.NoError(t, TCPThroughputConfig{Rate: 100e6, Streams: 4}.Validate())
	for _, tc := range []struct {
		cfg  TCPThroughputConfig
		want string
	}{
		{TCPThroughputConfig{Duration: Duration(-time.Second)}, "duration -1s is negative"},
		{TCPThroughputConfig{Interval: Duration(-time.Second)}, "interval -1s is negative"},
		{TCPThroughputConfig{Interval: Duration(time.Millisecond)}, "give at least 10ms"},
		{TCPThroughputConfig{Duration: Duration(time.Second), Interval: Duration(2 * time.Second)}, "duration 1s is shorter than interval 2s"},
		{TCPThroughputConfig{Streams: -1}, "streams -1 is out of range"},
		{TCPThroughputConfig{Streams: 1000}, "streams 1000 is out of range"},
		{TCPThroughputConfig{Rate: -1}, "rate -1 bit/s cannot be paced"},
		{TCPThroughputConfig{Rate: 10}, "rate 10 bit/s cannot be paced"},
		{TCPThroughputConfig{Omit: Duration(-time.Second)}, "omit -1s is negative"},
		{TCPThroughputConfig{BufSize: 10}, "buffer size 10 is out of range"},
	} {
		err := tc.cfg.Validate()
		require.Error(t, err, "%+v", tc.cfg)
		assert.Contains(t, err.Error(), tc.want)
		assert.Equal(t, strings.ToLower(err.Error()[:1]), err.Error()[:1], "errors are lower-case")
	}
}
