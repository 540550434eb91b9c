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
// worker 1 (cross-node), with the userspace data plane on both workers. Each run measures
// TCP throughput (bench.TCPThroughput, 1 stream) and busy UDP request-response round trips
// (bench.RequestResponse) and reports their medians; it ignores b.N. Run it with
// -benchtime 1x and -count N: every count builds a fresh cluster and measures both paths in
// turn, so the two interleave and drift hits both alike; compare them with benchstat.
//
//	go test -run '^$' -bench Tunnel -benchtime 1x -count 6 ./dataplanes/userspace/
func BenchmarkTunnel(b *testing.B) {
	c := newUserspaceCluster(b)
	_, err := c.AddService("client")
	if err != nil {
		b.Fatal(err)
	}
	client, err := c.AddInstance("client", 0)
	if err != nil {
		b.Fatal(err)
	}
	for _, path := range []struct {
		name   string
		worker int
	}{{"same-node", 0}, {"cross-node", 1}} {
		svc, err := c.AddService("server-" + path.name)
		if err != nil {
			b.Fatal(err)
		}
		server, err := c.AddInstance(svc.Name, path.worker)
		if err != nil {
			b.Fatal(err)
		}
		ep := bench.Endpoints{Client: client.NS, Server: server.NS, Target: svc.IP}
		b.Run(path.name, func(b *testing.B) {
			measureTunnel(b, ep)
		})
	}
}

func measureTunnel(b *testing.B, ep bench.Endpoints) {
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
	b.ReportMetric(median(tp)/1e6, "Mbit/s")
	b.ReportMetric(median(rr)*1e6, "µs/rr")
	b.ReportMetric(0, "ns/op")
}

func median(samples []stats.Sample) float64 {
	v := make([]float64, len(samples))
	for i, s := range samples {
		v[i] = s.Value
	}
	return stats.Summarize(v).Median
}
