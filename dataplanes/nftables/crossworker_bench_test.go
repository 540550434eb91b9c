package nftables_test

import (
	"context"
	"flag"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/edgebpf/edgebpf/bench"
	"github.com/edgebpf/edgebpf/dataplanes/direct"
	"github.com/edgebpf/edgebpf/dataplanes/nftables"
	"github.com/edgebpf/edgebpf/dataplanes/proxytest"
	"github.com/edgebpf/edgebpf/internal/testenv"
	"github.com/edgebpf/edgebpf/netsetup"
	"github.com/edgebpf/edgebpf/stats"
)

var crossRounds = flag.Int("rounds", 6, "rounds of BenchmarkCrossWorker, the data planes alternating")

// crossPlane is one data plane on its own two-worker cluster, client on worker 0 and server
// on worker 1, with the endpoints a meter needs.
type crossPlane struct {
	name                          string
	ep                            bench.Endpoints
	thr, cpu, udp50, udp99, rrCPU []float64
}

// BenchmarkCrossWorker compares, in one run, direct (routed over the underlay, the physical
// limit) with nftables over the kernel's VXLAN: single-stream TCP throughput, the CPU time
// the process spent per Gbit/s (sender and receiver threads, and the softirq work that ran in
// their context: the bridges, veths, routing, netfilter and VXLAN of both workers; not
// ksoftirqd's), and 64-byte UDP request-response round trips (busy), the two data planes
// alternating round by round:
//
//	go test -run XXX -bench CrossWorker -benchtime 1x ./dataplanes/nftables/
func BenchmarkCrossWorker(b *testing.B) {
	planes := []*crossPlane{
		crossSetup(b, "direct", func() proxytest.DataPlane { return direct.New() }),
		crossSetup(b, "nftables+vxlan", func() proxytest.DataPlane { return nftables.New() }),
	}
	ctx := context.Background()
	for round := range *crossRounds {
		for _, p := range planes {
			before := cpuSeconds()
			start := time.Now()
			s, err := bench.TCPThroughput(ctx, p.ep, bench.TCPThroughputConfig{
				Duration: bench.Duration(3 * time.Second), Interval: bench.Duration(500 * time.Millisecond), Omit: bench.Duration(500 * time.Millisecond)})
			if err != nil {
				b.Fatalf("%s: %v", p.name, err)
			}
			wall := time.Since(start).Seconds()
			cores := (cpuSeconds() - before) / wall
			thr := median(s, "throughput")
			if thr <= 0 {
				b.Fatalf("%s: no throughput measured", p.name)
			}
			p.thr, p.cpu = append(p.thr, thr), append(p.cpu, cores/(thr/1e9))

			before = cpuSeconds()
			r, err := bench.RequestResponse(ctx, p.ep, bench.RRConfig{Protocols: []string{bench.RRUDP}, Modes: []string{bench.RRBusy}, BusyCount: rrCount})
			if err != nil {
				b.Fatalf("%s: %v", p.name, err)
			}
			p.rrCPU = append(p.rrCPU, (cpuSeconds()-before)/(rrCount+rrWarmup))
			var rtt []float64
			for _, x := range r {
				rtt = append(rtt, x.Value)
			}
			sum := stats.Summarize(rtt)
			p.udp50, p.udp99 = append(p.udp50, sum.P50), append(p.udp99, sum.P99)
			b.Logf("round %d %-15s %6.2f Gbit/s  %5.1f %% of a core per Gbit/s  udp rr p50 %5.1f µs p99 %6.1f µs, %5.1f µs CPU per round trip",
				round, p.name, thr/1e9, 100*p.cpu[round], sum.P50*1e6, sum.P99*1e6, p.rrCPU[round]*1e6)
		}
	}
	for _, p := range planes {
		b.ReportMetric(stats.Summarize(p.thr).Median/1e9, "Gbit/s-"+p.name)
		b.ReportMetric(100*stats.Summarize(p.cpu).Median, "%core-per-Gbit/s-"+p.name)
		b.ReportMetric(stats.Summarize(p.udp50).Median*1e6, "µs-udp-p50-"+p.name)
		b.ReportMetric(stats.Summarize(p.udp99).Median*1e6, "µs-udp-p99-"+p.name)
		b.ReportMetric(stats.Summarize(p.rrCPU).Median*1e6, "µs-cpu-per-rr-"+p.name)
	}
	d, n := planes[0], planes[1]
	var thrRatio, rttDiff, cpuRatio, rrCPURatio []float64
	for i := range d.thr {
		thrRatio = append(thrRatio, n.thr[i]/d.thr[i])
		rrCPURatio = append(rrCPURatio, n.rrCPU[i]/d.rrCPU[i])
		rttDiff = append(rttDiff, (n.udp50[i]-d.udp50[i])*1e6)
		cpuRatio = append(cpuRatio, n.cpu[i]/d.cpu[i])
	}
	b.ReportMetric(stats.Summarize(thrRatio).Median, "x-throughput-vxlan/direct")
	b.ReportMetric(stats.Summarize(rttDiff).Median, "µs-udp-p50-vxlan-minus-direct")
	b.ReportMetric(stats.Summarize(cpuRatio).Median, "x-cpu-per-Gbit-vxlan/direct")
	b.ReportMetric(stats.Summarize(rrCPURatio).Median, "x-cpu-per-rr-vxlan/direct")
}

func crossSetup(b *testing.B, name string, newDP func() proxytest.DataPlane) *crossPlane {
	c := testenv.Cluster(b, netsetup.ClusterConfig{}, "client@0", "server@1")
	dps := proxytest.DeployCluster(b, c, newDP)
	client, _ := c.Workers[0].Instance("client", 0)
	server, _ := c.Workers[1].Instance("server", 0)
	svc, _ := c.Workers[0].Registry.Service("server")
	target, err := dps[0].Target(svc)
	if err != nil {
		b.Fatal(err)
	}
	return &crossPlane{name: name, ep: bench.Endpoints{Client: client.NS, Server: server.NS, Target: target}}
}

// rrCount is the busy round trips recorded per round; RequestResponse makes its default 20
// warm-up round trips before them.
const (
	rrCount  = 5000
	rrWarmup = 20
)

// cpuSeconds is the CPU time this process has used, user and system.
func cpuSeconds() float64 {
	var r unix.Rusage
	_ = unix.Getrusage(unix.RUSAGE_SELF, &r)
	return float64(r.Utime.Sec+r.Stime.Sec) + float64(r.Utime.Usec+r.Stime.Usec)/1e6
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
