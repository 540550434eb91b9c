package bench

import (
	"context"
	"net"
	"net/netip"
	"runtime"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/edgebpf/edgebpf/stats"
)

// udpLoopback runs both sides of a meter in the test's own namespace over 127.0.0.1.
var udpLoopback = Endpoints{Client: Current{}, Server: Current{}, Target: netip.MustParseAddr("127.0.0.1")}

func TestUDPHeaderRoundTrip(t *testing.T) {
	b := make([]byte, defaultUDPSize)
	for _, tc := range []struct {
		seq  uint64
		sent int64
	}{{0, 0}, {1, 123456789}, {1<<64 - 1, 1<<63 - 1}, {42, -5}} {
		encodeUDPHeader(b, tc.seq, tc.sent)
		seq, sent, ok := decodeUDPHeader(b)
		require.True(t, ok)
		assert.Equal(t, tc.seq, seq)
		assert.Equal(t, tc.sent, sent)
	}
	_, _, ok := decodeUDPHeader(b[:udpHeaderLen-1])
	assert.False(t, ok, "a payload shorter than the header must not decode")
}

func TestUDPJitterStep(t *testing.T) {
	// Synthetic stream: packets sent every 10 ms; arrivals give transits (arrival - send) of
	// 1, 3, 2, 2, 6 ms. Hand computation, iperf3's rule (first packet seeds prev_transit):
	//   p0: d=0              J = 0
	//   p1: d=2 ms           J = 0 + (2-0)/16          = 0.125 ms
	//   p2: d=1 ms           J = 0.125 + (1-0.125)/16  = 0.1796875 ms
	//   p3: d=0              J = 0.1796875 - 0.1796875/16 = 0.168457031 ms
	//   p4: d=4 ms           J = 0.168457031 + (4-0.168457031)/16 = 0.407928467 ms
	sent := []float64{0, 0.010, 0.020, 0.030, 0.040}
	arrival := []float64{0.001, 0.013, 0.022, 0.032, 0.046}
	want := []float64{0, 0.000125, 0.0001796875, 0.000168457031, 0.000407928467}
	var jitter, prev float64
	for i := range sent {
		transit := arrival[i] - sent[i]
		if i == 0 {
			prev = transit
		}
		jitter = jitterStep(jitter, prev, transit)
		prev = transit
		assert.InDelta(t, want[i], jitter, 1e-12, "after packet %d", i)
	}
	// Only differences of transit count: a constant offset (unsynchronised clocks) does not.
	assert.InDelta(t, jitterStep(0.5e-3, 7, 7.002), jitterStep(0.5e-3, 0, 0.002), 1e-12)
}

func TestUDPStreamCounts(t *testing.T) {
	// A direct check of the machinery: every scheduled packet arrives once, in order.
	cfg := udpStreamConfig{port: 25210, rate: 20e6, size: 200, duration: 300 * time.Millisecond, grace: 100 * time.Millisecond, owdEvery: 10}
	res, err := runUDPStream(context.Background(), udpLoopback, cfg)
	require.NoError(t, err)
	require.True(t, res.complete)
	// A sender that falls behind its schedule (a loaded machine) sends fewer packets rather
	// than running longer; what it sent must all arrive.
	assert.Positive(t, res.sent)
	assert.LessOrEqual(t, res.sent, cfg.packets())
	assert.Equal(t, res.sent, res.received)
	assert.Zero(t, res.duplicates)
	assert.Zero(t, res.stray)
	assert.Len(t, res.owd, int((res.received+9)/10))
	for _, o := range res.owd {
		assert.Zero(t, o.seq%10)
		assert.Positive(t, o.owd)
	}
	t.Logf("receive buffer granted: %d bytes", res.rcvBuf)
}

func TestCheckUDPEndpoints(t *testing.T) {
	assert.NoError(t, checkUDPEndpoints(udpLoopback))
	err := checkUDPEndpoints(Endpoints{Target: netip.MustParseAddr("::1")})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "client namespace is nil")
	assert.Contains(t, err.Error(), "server namespace is nil")
	assert.Contains(t, err.Error(), "not an IPv4 address")
	mapped := udpLoopback
	mapped.Target = netip.MustParseAddr("::ffff:127.0.0.1")
	assert.NoError(t, checkUDPEndpoints(mapped))
}

// requireUDPPortFree fails if port is still bound, i.e. a meter left its socket open.
func requireUDPPortFree(t *testing.T, port int) {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4zero, Port: port})
	require.NoError(t, err, "udp port %d still in use after the meter returned", port)
	require.NoError(t, c.Close())
}

// requireUDPGoroutinesBack fails if the meter left goroutines running. (Not
// assert.Eventually: it runs its condition on a goroutine of its own.)
func requireUDPGoroutinesBack(t *testing.T, before int) {
	t.Helper()
	deadline := time.Now().Add(time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	require.LessOrEqual(t, runtime.NumGoroutine(), before, "goroutines left running")
}

// udpByMetric groups samples by metric name.
func udpByMetric(samples []stats.Sample) map[string][]stats.Sample {
	m := make(map[string][]stats.Sample)
	for _, s := range samples {
		m[s.Metric.Name] = append(m[s.Metric.Name], s)
	}
	return m
}
