package ebpf_test

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/edgebpf/edgebpf/bench"
	"github.com/edgebpf/edgebpf/dataplanes/ebpf"
	"github.com/edgebpf/edgebpf/internal/testenv"
	"github.com/edgebpf/edgebpf/netsetup"
	"github.com/edgebpf/edgebpf/stats"
)

// BenchmarkCrossNodeThroughput measures one TCP stream from a client on worker 0 to a server
// on worker 1 of a 2-worker cluster, through the eBPF tunnel (the service IP) and routed
// directly over the underlay (the server's namespace IP; each worker routes the other's
// subnet via its node IP and forwards), alternating in one run so that the machine's load
// hits both alike. Both paths share the cluster: direct packets pass the proxy's program
// (outside the service range: an early exit) and the decapsulation (not the tunnel port).
//
//	go test -run XXX -bench CrossNodeThroughput -benchtime 3x ./dataplanes/ebpf/
func BenchmarkCrossNodeThroughput(b *testing.B) {
	c := testenv.Cluster(b, netsetup.ClusterConfig{}, "client@0", "server@1")
	for _, w := range c.Workers {
		dp := ebpf.New()
		if err := dp.Deploy(context.Background(), w); err != nil {
			b.Fatal(err)
		}
		defer dp.Close()
		routeDirect(b, w)
	}
	client, _ := c.Workers[0].Instance("client", 0)
	server, _ := c.Workers[1].Instance("server", 0)
	svc, _ := c.Workers[0].Registry.Service("server")
	paths := []struct {
		name string
		ep   bench.Endpoints
	}{
		{"direct", bench.Endpoints{Client: client.NS, Server: server.NS, Target: server.NSIP}},
		{"ebpf", bench.Endpoints{Client: client.NS, Server: server.NS, Target: svc.IP}},
	}
	cfg := bench.TCPThroughputConfig{Duration: bench.Duration(3 * time.Second), Interval: bench.Duration(500 * time.Millisecond),
		Omit: bench.Duration(500 * time.Millisecond)}
	samples := make([][]float64, len(paths))
	b.ResetTimer()
	for range b.N {
		for i, p := range paths {
			s, err := bench.TCPThroughput(context.Background(), p.ep, cfg)
			if err != nil {
				b.Fatalf("%s: %v", p.name, err)
			}
			samples[i] = append(samples[i], median(s, "throughput"))
		}
	}
	for i, p := range paths {
		b.ReportMetric(stats.Summarize(samples[i]).Median/1e9, "Gbit/s-"+p.name)
	}
	b.ReportMetric(stats.Summarize(samples[1]).Median/stats.Summarize(samples[0]).Median, "x-direct-ebpf")
}

// routeDirect routes every peer's subnet via the peer's node IP in the worker's namespace and
// turns forwarding on there: the direct data plane across workers, for comparison.
func routeDirect(b *testing.B, w *netsetup.Node) {
	u, _ := w.Underlay()
	undo, err := w.EnableForwarding()
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = undo() })
	h, err := w.NS.Netlink()
	if err != nil {
		b.Fatal(err)
	}
	defer h.Close()
	for _, p := range u.Peers {
		dst := &net.IPNet{IP: p.Subnet.Addr().AsSlice(), Mask: net.CIDRMask(p.Subnet.Bits(), 32)}
		if err := h.RouteAdd(&netlink.Route{Dst: dst, Gw: p.IP.AsSlice(), LinkIndex: u.Index}); err != nil {
			b.Fatalf("route %s via %s: %v", p.Subnet, p.IP, err)
		}
	}
}
