package bench_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/edgebpf/edgebpf/bench"
	"github.com/edgebpf/edgebpf/internal/testenv"
	"github.com/edgebpf/edgebpf/stats"
)

// The tests in this file run every meter between two instance namespaces of a real node, the
// client addressing the server's namespace IP (the direct data plane). Loopback tests of the
// same meters live beside each meter.

func TestMain(m *testing.M) { testenv.Main(m) }

func endpoints(t *testing.T) bench.Endpoints {
	n := testenv.Node(t, "client", "server")
	c, _ := n.Instance("client", 0)
	s, _ := n.Instance("server", 0)
	return bench.Endpoints{Client: c.NS, Server: s.NS, Target: s.NSIP}
}

func byMetric(samples []stats.Sample) map[string][]float64 {
	out := map[string][]float64{}
	for _, s := range samples {
		out[s.Metric.Name] = append(out[s.Metric.Name], s.Value)
	}
	return out
}

func TestMetersAcrossNamespaces(t *testing.T) {
	ep := endpoints(t)
	ctx := context.Background()

	t.Run("connect-rtt", func(t *testing.T) {
		s, err := bench.ConnectRTT(ctx, ep, bench.ConnectConfig{Count: 20, Interval: bench.Duration(5 * time.Millisecond)})
		require.NoError(t, err)
		m := byMetric(s)
		require.Len(t, m["rtt"], 20)
		for _, v := range m["rtt"] {
			assert.Positive(t, v)
			assert.Less(t, v, 1.0)
		}
		assert.Equal(t, []float64{0}, m["loss"])
	})

	t.Run("request-response", func(t *testing.T) {
		s, err := bench.RequestResponse(ctx, ep, bench.RRConfig{BusyCount: 200, PacedCount: 10, Interval: bench.Duration(2 * time.Millisecond)})
		require.NoError(t, err)
		m := byMetric(s)
		for _, name := range []string{"rtt:udp-rr-busy", "rtt:tcp-rr-busy", "rtt:udp-rr-paced", "rtt:tcp-rr-paced"} {
			want := 200
			if strings.HasSuffix(name, "paced") {
				want = 10
			}
			require.Len(t, m[name], want, name)
			for _, v := range m[name] {
				assert.Positive(t, v, name)
				assert.Less(t, v, 1.0, name)
			}
		}
	})

	t.Run("udp-jitter", func(t *testing.T) {
		s, err := bench.UDPJitter(ctx, ep, bench.UDPJitterConfig{Rate: 1e6, Duration: bench.Duration(time.Second)})
		require.NoError(t, err)
		m := byMetric(s)
		require.Len(t, m["jitter"], 1)
		assert.GreaterOrEqual(t, m["jitter"][0], 0.0)
		assert.Equal(t, []float64{0}, m["loss"], "no loss at 1 Mbit/s")
		assert.InDelta(t, 89, len(m["owd"]), 3, "1 Mbit/s of 1400-byte datagrams for 1 s")
	})

	t.Run("tcp-throughput", func(t *testing.T) {
		s, err := bench.TCPThroughput(ctx, ep, bench.TCPThroughputConfig{Duration: bench.Duration(time.Second), Interval: bench.Duration(250 * time.Millisecond), Streams: 2})
		require.NoError(t, err)
		m := byMetric(s)
		require.NotEmpty(t, m["throughput"])
		for _, v := range m["throughput"] {
			assert.Positive(t, v)
		}
	})

	t.Run("udp-sweep", func(t *testing.T) {
		s, err := bench.UDPSweep(ctx, ep, bench.UDPSweepConfig{Rates: []bench.Rate{1e6, 20e6}, PerRate: bench.Duration(500 * time.Millisecond), Pause: bench.Duration(50 * time.Millisecond)})
		require.NoError(t, err)
		xs := map[string]bool{}
		for _, x := range s {
			xs[x.X] = true
			if x.Metric.Name == "loss" && x.X == "1000000" {
				assert.Zero(t, x.Value, "no loss at 1 Mbit/s")
			}
		}
		assert.Equal(t, map[string]bool{"1000000": true, "20000000": true}, xs)
		for _, x := range s {
			switch x.Metric.Name {
			case "gso_segments":
				assert.Equal(t, 46.0, x.Value, "the kernel takes UDP GSO of 1400-byte datagrams across veths and the bridge")
			case "limited_by:receiver", "limited_by:dataplane":
				if x.X == "1000000" {
					assert.Zero(t, x.Value, "%s: no loss at 1 Mbit/s", x.Metric.Name)
				}
			}
		}
	})

	t.Run("resources", func(t *testing.T) {
		s, err := bench.Resources(ctx, bench.Deployed(ep), bench.ResourcesConfig{Idle: bench.Duration(300 * time.Millisecond), Load: bench.Duration(600 * time.Millisecond), Cleanup: bench.Duration(300 * time.Millisecond), Interval: bench.Duration(100 * time.Millisecond), LoadRate: 50e6})
		require.NoError(t, err)
		phases := map[string]int{}
		for _, x := range s {
			if x.Metric.Name == "cpu" {
				phases[x.X]++
				assert.GreaterOrEqual(t, x.Value, 0.0)
				assert.LessOrEqual(t, x.Value, 100.0)
			}
		}
		assert.Positive(t, phases["idle"])
		assert.Positive(t, phases["load"])
		assert.Positive(t, phases["cleanup"])
	})
}
