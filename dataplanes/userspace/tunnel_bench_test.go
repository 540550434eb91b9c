package userspace_test

import (
	"context"
	"testing"
	"time"

	"github.com/edgebpf/edgebpf/bench"
	"github.com/edgebpf/edgebpf/stats"
)

// BenchmarkTunnel compares the user-space tunnel with the same worker's path: a client on
// worker 0 sends through a service IP to an instance on worker 0 (same-node) and to one on
// worker 1 (cross-node), with the userspace data plane on both workers. Each of the b.N
// repetitions measures both paths in turn, so they interleave and drift hits both alike:
// TCP throughput (bench.TCPThroughput, one stream, 3 s) and busy UDP request-response round
// trips (bench.RequestResponse, 64 bytes). It reports the median over the repetitions of
// each repetition's median, per path, and the cross-node/same-node ratios; -v logs every
// repetition. Timing is reported, never asserted.
//
//	go test -run '^$' -bench Tunnel -benchtime 6x -v ./dataplanes/userspace/
func BenchmarkTunnel(b *testing.B) {
	c := newUserspaceCluster(b)
	if _, err := c.AddService("client"); err != nil {
		b.Fatal(err)
	}
	client, err := c.AddInstance("client", 0)
	if err != nil {
		b.Fatal(err)
	}
	paths := []string{"same", "cross"}
	eps := map[string]bench.Endpoints{}
	for worker, path := range paths {
		svc, err := c.AddService("server-" + path)
		if err != nil {
			b.Fatal(err)
		}
		server, err := c.AddInstance(svc.Name, worker)
		if err != nil {
			b.Fatal(err)
		}
		eps[path] = bench.Endpoints{Client: client.NS, Server: server.NS, Target: svc.IP}
	}
	tput, rtt := map[string][]float64{}, map[string][]float64{}
	for i := 0; b.Loop(); i++ {
		for _, path := range paths {
			tp, rr := measureTunnel(b, eps[path])
			tput[path], rtt[path] = append(tput[path], tp), append(rtt[path], rr)
			b.Logf("rep %d %s-node: %.0f Mbit/s, udp rr %.1f µs", i, path, tp/1e6, rr*1e6)
		}
	}
	med := func(v []float64) float64 { return stats.Summarize(v).Median }
	b.ReportMetric(med(tput["same"])/1e6, "same-Mbit/s")
	b.ReportMetric(med(tput["cross"])/1e6, "cross-Mbit/s")
	b.ReportMetric(med(tput["cross"])/med(tput["same"]), "cross/same-tput")
	b.ReportMetric(med(rtt["same"])*1e6, "same-µs/rr")
	b.ReportMetric(med(rtt["cross"])*1e6, "cross-µs/rr")
	b.ReportMetric(med(rtt["cross"])/med(rtt["same"]), "cross/same-rtt")
	b.ReportMetric(0, "ns/op")
}

// measureTunnel returns the median TCP throughput (bit/s) and median busy UDP round trip (s)
// from ep.Client to ep.Target.
func measureTunnel(b *testing.B, ep bench.Endpoints) (float64, float64) {
	ctx := context.Background()
	tp, err := bench.TCPThroughput(ctx, ep, bench.TCPThroughputConfig{
		Duration: bench.Duration(3 * time.Second), Interval: bench.Duration(500 * time.Millisecond), Omit: bench.Duration(500 * time.Millisecond),
	})
	if err != nil {
		b.Fatal(err)
	}
	rr, err := bench.RequestResponse(ctx, ep, bench.RRConfig{Protocols: []string{"udp"}, Modes: []string{"busy"}, BusyCount: 3000})
	if err != nil {
		b.Fatal(err)
	}
	return stats.Summarize(values(tp)).Median, stats.Summarize(values(rr)).Median
}

func values(samples []stats.Sample) []float64 {
	v := make([]float64, len(samples))
	for i, s := range samples {
		v[i] = s.Value
	}
	return v
}
