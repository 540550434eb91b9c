package ebpf_test

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/edgebpf/edgebpf/bench"
	"github.com/edgebpf/edgebpf/dataplanes/ebpf"
	"github.com/edgebpf/edgebpf/internal/testenv"
	"github.com/edgebpf/edgebpf/netsetup"
	"github.com/edgebpf/edgebpf/stats"
)

// BenchmarkScale measures the eBPF proxy with 1 service and with 10,000 services × 4
// instances installed, in one run: the time to install them, TCP throughput and connect RTT
// through the proxy, alternating:
//
//	go test -run XXX -bench Scale -benchtime 1x ./dataplanes/ebpf/
func BenchmarkScale(b *testing.B) {
	node := testenv.Node(b, "client", "server")
	dp := ebpf.New()
	if err := dp.Deploy(context.Background(), node); err != nil {
		b.Fatal(err)
	}
	defer dp.Close()
	px := dp.Proxy()
	client, _ := node.Instance("client", 0)
	server, _ := node.Instance("server", 0)
	svc, _ := node.Registry.Service("server")
	ep := bench.Endpoints{Client: client.NS, Server: server.NS, Target: svc.IP}

	// 10,000 synthetic services of 4 instances each, all backed by the real server instance
	// (the node's subnet cannot hold 40,000 namespaces); addresses from 10.30.64.0 upward.
	synthetic := make([]netip.Addr, 10000)
	base := netip.MustParseAddr("10.30.64.0")
	for i := range synthetic {
		base = base.Next()
		synthetic[i] = base
	}
	backends := []*netsetup.Instance{server, server, server, server}

	measure := func() (thr, rtt float64) {
		s, err := bench.TCPThroughput(context.Background(), ep, bench.TCPThroughputConfig{Duration: bench.Duration(3 * time.Second), Interval: bench.Duration(500 * time.Millisecond), Omit: bench.Duration(500 * time.Millisecond)})
		if err != nil {
			b.Fatal(err)
		}
		p, err := bench.ConnectRTT(context.Background(), ep, bench.ConnectConfig{Count: 200, Interval: bench.Duration(5 * time.Millisecond)})
		if err != nil {
			b.Fatal(err)
		}
		return median(s, "throughput"), median(p, "rtt")
	}
	var one, many [2][]float64
	var installs []time.Duration
	for round := range 3 {
		t, r := measure()
		one[0], one[1] = append(one[0], t), append(one[1], r)
		start := time.Now()
		for _, ip := range synthetic {
			if err := px.Install(ip, "synthetic", backends); err != nil {
				b.Fatal(err)
			}
		}
		installs = append(installs, time.Since(start))
		t, r = measure()
		many[0], many[1] = append(many[0], t), append(many[1], r)
		for _, ip := range synthetic {
			px.Uninstall(ip)
		}
		b.Logf("round %d: 1 service %.2f Gbit/s %.1f µs; 10,000 services %.2f Gbit/s %.1f µs; install %v",
			round, one[0][round]/1e9, one[1][round]*1e6, many[0][round]/1e9, many[1][round]*1e6, installs[round])
	}
	b.ReportMetric(stats.Summarize(one[0]).Median/1e9, "Gbit/s-1svc")
	b.ReportMetric(stats.Summarize(many[0]).Median/1e9, "Gbit/s-10k")
	b.ReportMetric(stats.Summarize(one[1]).Median*1e6, "µs-rtt-1svc")
	b.ReportMetric(stats.Summarize(many[1]).Median*1e6, "µs-rtt-10k")
	var secs []float64
	for _, d := range installs {
		secs = append(secs, d.Seconds())
	}
	b.ReportMetric(stats.Summarize(secs).Median, "s-install-10k")
}

func median(s []stats.Sample, metric string) float64 {
	var vs []float64
	for _, x := range s {
		if x.Metric.Name == metric {
			vs = append(vs, x.Value)
		}
	}
	return stats.Summarize(vs).Median
}
