package proxy_test

import (
	"context"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	"github.com/edgebpf/edgebpf/bench"
	edgeebpf "github.com/edgebpf/edgebpf/dataplanes/ebpf"
	"github.com/edgebpf/edgebpf/dataplanes/ebpf/manager/emptyprog"
	"github.com/edgebpf/edgebpf/internal/testenv"
	"github.com/edgebpf/edgebpf/internal/testpkt"
)

// BenchmarkLiveCost measures the proxy's kernel run time per packet on live traffic through a
// real node (BPF run-time statistics, as edgebpf run --bpf-stats records them), next to an
// empty TCX program attached ahead of it on the same veths, which sees the same packets: TCP
// bulk through the service IP (GSO packets), TCP connects at 200/s (the latency experiment's
// kind) and UDP at 1 Mbit/s (89 packets/s, the jitter experiment's). The empty program also
// runs in a BPF test run with statistics on: warm, with the accounting included. The README's
// per-packet cost section and the package doc's Note explain the figures:
//
//	go test -run XXX -bench LiveCost -benchtime 1x ./dataplanes/ebpf/modules/proxy/
func BenchmarkLiveCost(b *testing.B) {
	node := testenv.Node(b, "client", "server")
	dp := edgeebpf.New()
	if err := dp.Deploy(context.Background(), node); err != nil {
		b.Fatal(err)
	}
	defer dp.Close()
	px, _ := dp.Proxy().Programs()
	empty, err := emptyprog.Load()
	if err != nil {
		b.Fatal(err)
	}
	defer empty.Close()
	client, _ := node.Instance("client", 0)
	server, _ := node.Instance("server", 0)
	svc, _ := node.Registry.Service("server")
	err = node.NS.Do(func() error {
		for _, ifindex := range []int{client.VethIndex, server.VethIndex} {
			l, err := link.AttachTCX(link.TCXOptions{Interface: ifindex, Program: empty, Attach: ebpf.AttachTCXIngress, Anchor: link.Head()})
			if err != nil {
				return err
			}
			b.Cleanup(func() { _ = l.Close() })
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	st, err := ebpf.EnableStats(unix.BPF_STATS_RUN_TIME)
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	ep := bench.Endpoints{Client: client.NS, Server: server.NS, Target: svc.IP}
	ctx := context.Background()
	loads := []struct {
		name string
		run  func() error
	}{
		{"tcp-bulk", func() error {
			_, err := bench.TCPThroughput(ctx, ep, bench.TCPThroughputConfig{Duration: bench.Duration(3 * time.Second), Interval: bench.Duration(time.Second)})
			return err
		}},
		{"connects-200/s", func() error {
			_, err := bench.ConnectRTT(ctx, ep, bench.ConnectConfig{Count: 600, Interval: bench.Duration(5 * time.Millisecond)})
			return err
		}},
		{"udp-89pkt/s", func() error {
			_, err := bench.UDPJitter(ctx, ep, bench.UDPJitterConfig{Rate: 1e6, Duration: bench.Duration(3 * time.Second)})
			return err
		}},
		{"test-run", func() error {
			// The empty program warm, with the accounting: the difference to its figure
			// in BenchmarkProxyCost (statistics off) is what the accounting costs.
			frame := testpkt.IPv4(testpkt.Spec{Proto: "tcp", Src: "10.18.0.2", Dst: "10.18.0.3", Sport: 40000, Dport: 5201, Payload: make([]byte, 10)})
			_, _, err := empty.Benchmark(frame, 1000000, nil)
			return err
		}},
	}
	for range b.N {
		for _, l := range loads {
			before := [2]*ebpf.ProgramStats{progStats(b, empty), progStats(b, px)}
			if err := l.run(); err != nil {
				b.Fatalf("%s: %v", l.name, err)
			}
			for i, p := range []*ebpf.Program{empty, px} {
				after := progStats(b, p)
				n := after.RunCount - before[i].RunCount
				if n == 0 {
					continue
				}
				ns := float64(after.Runtime-before[i].Runtime) / float64(n)
				b.ReportMetric(ns, "ns/pkt-"+[]string{"empty", "proxy"}[i]+"-"+l.name)
				b.Logf("%s %s: %d runs, %.0f ns per run", l.name, []string{"empty", "proxy"}[i], n, ns)
			}
		}
	}
}

func progStats(b *testing.B, p *ebpf.Program) *ebpf.ProgramStats {
	s, err := p.Stats()
	if err != nil {
		b.Fatal(err)
	}
	return s
}
