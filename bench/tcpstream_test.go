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

func TestTCPStreamLoopback(t *testing.T) {
	tcpCheckLeaks(t)
	for _, streams := range []int{1, 3} {
		cfg := TCPStreamConfig{Port: 25210, Duration: Duration(600 * time.Millisecond), Interval: Duration(200 * time.Millisecond), Streams: streams, Omit: Duration(100 * time.Millisecond)}
		samples, err := TCPStream(context.Background(), tcpLoopback(), cfg)
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

func TestTCPStreamRate(t *testing.T) {
	tcpCheckLeaks(t)
	const rate = 200e6
	for _, streams := range []int{1, 2} {
		cfg := TCPStreamConfig{Port: 25211, Duration: Duration(time.Second), Interval: Duration(250 * time.Millisecond), Streams: streams, Rate: rate}
		samples, err := TCPStream(context.Background(), tcpLoopback(), cfg)
		require.NoError(t, err)
		require.Len(t, samples, 4)
		mean := tcpMean(samples)
		t.Logf("%d streams paced to %.0f Mbit/s: mean %.1f Mbit/s", streams, rate/1e6, mean/1e6)
		// A sanity band, not a performance threshold.
		assert.InDelta(t, rate, mean, rate/2, "streams %d", streams)
	}
}

func TestTCPStreamCancel(t *testing.T) {
	tcpCheckLeaks(t)
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(500*time.Millisecond, cancel)
	begin := time.Now()
	samples, err := TCPStream(ctx, tcpLoopback(), TCPStreamConfig{Port: 25212, Duration: Duration(time.Minute), Interval: Duration(100 * time.Millisecond), Streams: 2})
	require.ErrorIs(t, err, context.Canceled)
	assert.Less(t, time.Since(begin), 2*time.Second)
	assert.NotEmpty(t, samples, "partial results are kept")
	assert.Less(t, len(samples), 600)
}

func TestTCPStreamNoServer(t *testing.T) {
	tcpCheckLeaks(t)
	ep := tcpLoopback()
	ep.Server = tcpFailingNS{}
	_, err := TCPStream(context.Background(), ep, TCPStreamConfig{Port: 25213, Duration: Duration(time.Second)})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "start receiver")
}

func TestTCPStreamIntervals(t *testing.T) {
	ms := time.Millisecond
	assert.Equal(t, []streamInterval{{250 * ms, true}, {500 * ms, true}, {750 * ms, true}, {1000 * ms, true}},
		streamIntervals(time.Second, 250*ms))
	assert.Equal(t, []streamInterval{{250 * ms, true}, {500 * ms, true}, {750 * ms, true}, {900 * ms, true}},
		streamIntervals(900*ms, 250*ms), "a tail of 150ms is at least half of 250ms")
	assert.Equal(t, []streamInterval{{250 * ms, true}, {500 * ms, true}, {750 * ms, true}, {1000 * ms, true}, {1100 * ms, false}},
		streamIntervals(1100*ms, 250*ms), "a tail of 100ms is dropped but still run")
	assert.Equal(t, []streamInterval{{time.Second, true}}, streamIntervals(time.Second, time.Second))
}

func TestTCPStreamPacer(t *testing.T) {
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

func TestTCPStreamValidate(t *testing.T) {
	assert.NoError(t, TCPStreamConfig{}.Validate(), "zero values take defaults")
	assert.NoError(t, TCPStreamConfig{Rate: 100e6, Streams: 4}.Validate())
	for _, tc := range []struct {
		cfg  TCPStreamConfig
		want string
	}{
		{TCPStreamConfig{Duration: Duration(-time.Second)}, "duration -1s is negative"},
		{TCPStreamConfig{Interval: Duration(-time.Second)}, "interval -1s is negative"},
		{TCPStreamConfig{Interval: Duration(time.Millisecond)}, "give at least 10ms"},
		{TCPStreamConfig{Duration: Duration(time.Second), Interval: Duration(2 * time.Second)}, "duration 1s is shorter than interval 2s"},
		{TCPStreamConfig{Streams: -1}, "streams -1 is out of range"},
		{TCPStreamConfig{Streams: 1000}, "streams 1000 is out of range"},
		{TCPStreamConfig{Rate: -1}, "rate -1 bit/s cannot be paced"},
		{TCPStreamConfig{Rate: 10}, "rate 10 bit/s cannot be paced"},
		{TCPStreamConfig{Omit: Duration(-time.Second)}, "omit -1s is negative"},
		{TCPStreamConfig{BufSize: 10}, "buffer size 10 is out of range"},
	} {
		err := tc.cfg.Validate()
		require.Error(t, err, "%+v", tc.cfg)
		assert.Contains(t, err.Error(), tc.want)
		assert.Equal(t, strings.ToLower(err.Error()[:1]), err.Error()[:1], "errors are lower-case")
	}
}
