package bench

import (
	"context"
	"math"
	"runtime"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/edgebpf/edgebpf/stats"
)

func TestUDPSweepLoopback(t *testing.T) {
	before := runtime.NumGoroutine()
	cfg := UDPSweepConfig{
		Port:          25204,
		Rates:         []Rate{10e6, 50e6},
		PerRate:       Duration(500 * time.Millisecond),
		Pause:         Duration(100 * time.Millisecond),
		Grace:         100 * time.Millisecond,
		MaxOWDSamples: 1000,
	}
	samples, err := UDPSweep(context.Background(), udpLoopback, cfg)
	require.NoError(t, err)
	requireUDPPortFree(t, 25204)
	requireUDPGoroutinesBack(t, before)

	perX := make(map[string][]string)
	for _, s := range samples {
		assert.Equal(t, "bit/s", s.XUnit)
		perX[s.X] = append(perX[s.X], s.Metric.Name)
	}
	require.Len(t, perX, 2)
	for _, x := range []string{"10000000", "50000000"} {
		require.Contains(t, perX, x)
	}
	for _, r := range cfg.Rates {
		rate := float64(r)
		x := map[float64]string{10e6: "10000000", 50e6: "50000000"}[rate]
		var rateSamples = udpByMetric(udpFilterX(samples, x))
		require.Len(t, rateSamples["loss"], 1, x)
		require.Len(t, rateSamples["send_rate"], 1, x)
		require.Len(t, rateSamples["throughput"], 1, x)
		for _, m := range []string{"limited_by:sender", "limited_by:receiver", "limited_by:dataplane", "gso_segments", "sender_threads", "cpu_ns_per_pkt", "cpu_ns_per_pkt:machine"} {
			require.Len(t, rateSamples[m], 1, "%s at %s", m, x)
		}
		assert.Equal(t, float64(runtime.NumCPU()), rateSamples["sender_threads"][0].Value, "one thread per CPU by default")
		// Net of the idle rate, so noise may take it below zero at low rates: only finite.
		assert.False(t, math.IsNaN(rateSamples["cpu_ns_per_pkt"][0].Value) || math.IsInf(rateSamples["cpu_ns_per_pkt"][0].Value, 0))
		// A sanity band, not a performance threshold: these rates are far below loopback's.
		send := rateSamples["send_rate"][0].Value
		assert.InEpsilon(t, rate, send, 0.2, "send rate at %s", x)
		assert.InEpsilon(t, rate, rateSamples["throughput"][0].Value, 0.2, "throughput at %s", x)
		assert.Less(t, rateSamples["loss"][0].Value, 1.0, "loss at %s", x)

		// 10 Mbit/s for 0.5 s is 447 packets: all kept. 50 Mbit/s is 2233: every 3rd kept.
		expected := udpStreamConfig{rate: rate, size: defaultUDPSize, duration: time.Duration(cfg.PerRate)}.packets()
		k := (expected + 999) / 1000
		owd := rateSamples["owd"]
		// Every k-th packet is kept: at most the planned packets' share, and within the same
		// sanity band as the send rate (a loaded machine sends a little less than planned).
		kept := float64((expected + k - 1) / k)
		assert.LessOrEqual(t, float64(len(owd)), kept+1, "owd samples at %s", x)
		assert.InEpsilon(t, kept, float64(len(owd)), 0.2, "owd samples at %s", x)
		for _, s := range owd {
			assert.Zero(t, uint64(s.Seq)%k)
			assert.Positive(t, s.Value)
		}
		t.Logf("%s bit/s: send %.0f, throughput %.0f, loss %.2f %%, %d owd samples (every %d)",
			x, send, rateSamples["throughput"][0].Value, rateSamples["loss"][0].Value, len(owd), k)
	}
}

func udpFilterX(samples []stats.Sample, x string) []stats.Sample {
	var out []stats.Sample
	for _, s := range samples {
		if s.X == x {
			out = append(out, s)
		}
	}
	return out
}

func TestUDPSweepCancel(t *testing.T) {
	before := runtime.NumGoroutine()
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(700*time.Millisecond, cancel)
	start := time.Now()
	cfg := UDPSweepConfig{Port: 25206, Rates: []Rate{5e6, 6e6}, PerRate: Duration(400 * time.Millisecond), Pause: Duration(100 * time.Millisecond)}
	samples, err := UDPSweep(ctx, udpLoopback, cfg)
	require.ErrorIs(t, err, context.Canceled)
	assert.Less(t, time.Since(start), 2*time.Second)
	requireUDPPortFree(t, 25206)
	requireUDPGoroutinesBack(t, before)
	// The first rate finished (0.4 s + 0.2 s grace); the second was cut after its start.
	first := udpByMetric(udpFilterX(samples, "5000000"))
	assert.Len(t, first["loss"], 1)
	assert.NotEmpty(t, first["owd"])
	assert.Empty(t, udpByMetric(udpFilterX(samples, "6000000"))["loss"])
}

func TestUDPSweepValidate(t *testing.T) {
	assert.NoError(t, UDPSweepConfig{}.Validate())
	d := UDPSweepConfig{}.withDefaults()
	assert.Equal(t, []Rate{1e6, 50e6, 100e6, 150e6, 200e6, 250e6, 300e6, 350e6, 400e6, 450e6, 500e6}, d.Rates)
	for _, tc := range []struct {
		name string
		cfg  UDPSweepConfig
		want []string
	}{
		{"empty rates", UDPSweepConfig{Rates: []Rate{}}, []string{"udp sweep: rates is empty: give at least one rate"}},
		{"zero rate", UDPSweepConfig{Rates: []Rate{1e6, 0}}, []string{"rates[1] 0 bit/s is not a positive number"}},
		{"impossible rate", UDPSweepConfig{Rates: []Rate{200e9}}, []string{"rates[0] 200000000000 bit/s is above 100 Gbit/s"}},
		{"repeated rate", UDPSweepConfig{Rates: []Rate{1e6, 2e6, 1e6}}, []string{"rates[2] repeats rates[0] (1000000 bit/s)"}},
		{"no packet", UDPSweepConfig{Rates: []Rate{100}}, []string{"rates[0] 100 bit/s sends not even one 1400-byte packet in 5s"}},
		{"negative per-rate", UDPSweepConfig{PerRate: -1}, []string{"per-rate duration -1ns is negative"}},
		{"negative pause", UDPSweepConfig{Pause: -1}, []string{"pause -1ns is negative"}},
		{"negative max owd", UDPSweepConfig{MaxOWDSamples: -1}, []string{"max OWD samples -1 is negative"}},
		{"small size", UDPSweepConfig{Size: 15}, []string{"size 15 bytes cannot hold"}},
		{"negative threads", UDPSweepConfig{Threads: -1}, []string{"threads -1 is not between 0 and 256"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.Validate()
			require.Error(t, err)
			for _, w := range tc.want {
				assert.Contains(t, err.Error(), w)
			}
			_, merr := UDPSweep(context.Background(), udpLoopback, tc.cfg)
			assert.EqualError(t, merr, err.Error())
		})
	}
}
