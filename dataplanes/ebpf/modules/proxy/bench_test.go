package proxy

import (
	"net/netip"
	"testing"

	"github.com/cilium/ebpf"

	"github.com/edgebpf/edgebpf/dataplanes/ebpf/manager/emptyprog"
	"github.com/edgebpf/edgebpf/internal/testenv"
	"github.com/edgebpf/edgebpf/internal/testpkt"
	"github.com/edgebpf/edgebpf/netsetup"
)

// BenchmarkProxyCost measures the proxy program's per-packet cost on an established session
// with BPF test runs, next to an empty TC program, with 1 and with 10,000 services × 4
// instances installed:
//
//	go test -run XXX -bench ProxyCost ./dataplanes/ebpf/modules/proxy/
func BenchmarkProxyCost(b *testing.B) {
	r := &rig{}
	node := testenv.Node(b)
	p, err := New(node, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer p.Close()
	r.p = p
	r.svc = netip.MustParseAddr("10.30.9.1")
	// A test run repeats on the same packet, which the program rewrites: so that every
	// repetition takes the full session-hit path (lookup, checksum updates, address and MAC
	// stores, redirect), the translation maps the packet onto itself.
	client := &netsetup.Instance{NSIP: netip.MustParseAddr("10.18.0.50"), InstanceIP: netip.MustParseAddr("10.18.0.50"), VethIndex: 1, MAC: make([]byte, 6)}
	if err := p.putClient(client); err != nil {
		b.Fatal(err)
	}
	backend := &netsetup.Instance{NSIP: netip.MustParseAddr("10.30.9.1"), VethIndex: 1, MAC: make([]byte, 6)}
	four := []*netsetup.Instance{backend, backend, backend, backend}
	if err := p.Install(r.svc, "s", four); err != nil {
		b.Fatal(err)
	}
	empty, err := emptyprog.Load()
	if err != nil {
		b.Fatal(err)
	}
	defer empty.Close()
	frame := testpkt.IPv4(testpkt.Spec{Proto: "tcp", Src: "10.18.0.50", Dst: "10.30.9.1", Sport: 40000, Dport: 80, Payload: make([]byte, 10)})
	// Establish the session with a SYN: later runs take the session-hit path.
	syn := testpkt.IPv4(testpkt.Spec{Proto: "tcp", Src: "10.18.0.50", Dst: "10.30.9.1", Sport: 40000, Dport: 80, SYN: true, Payload: make([]byte, 10)})
	if ret, err := p.objs.ProxyIn.Run(&ebpf.RunOptions{Data: syn}); err != nil || ret != tcRedirect {
		b.Fatalf("first run: verdict %d, %v", ret, err)
	}
	cost := func(b *testing.B, run func(int) (uint32, float64, error)) {
		_, per, err := run(b.N)
		if err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(per, "ns/pkt")
	}
	b.Run("empty", func(b *testing.B) {
		cost(b, func(n int) (uint32, float64, error) {
			ret, d, err := empty.Benchmark(frame, n, nil)
			return ret, float64(d.Nanoseconds()), err
		})
	})
	b.Run("proxy-1-service", func(b *testing.B) {
		cost(b, func(n int) (uint32, float64, error) {
			ret, d, err := p.objs.ProxyIn.Benchmark(frame, n, nil)
			return ret, float64(d.Nanoseconds()), err
		})
	})
	ip := netip.MustParseAddr("10.30.64.0")
	for range 10000 {
		ip = ip.Next()
		if err := p.Install(ip, "synthetic", four); err != nil {
			b.Fatal(err)
		}
	}
	b.Run("proxy-10000-services", func(b *testing.B) {
		cost(b, func(n int) (uint32, float64, error) {
			ret, d, err := p.objs.ProxyIn.Benchmark(frame, n, nil)
			return ret, float64(d.Nanoseconds()), err
		})
	})
}
