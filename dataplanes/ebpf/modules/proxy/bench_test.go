package proxy

import (
	"net/netip"
	"testing"

	"github.com/cilium/ebpf"

	"github.com/edgebpf/edgebpf/dataplanes/ebpf/manager"
	"github.com/edgebpf/edgebpf/dataplanes/ebpf/manager/emptyprog"
	"github.com/edgebpf/edgebpf/internal/testenv"
	"github.com/edgebpf/edgebpf/internal/testpkt"
	"github.com/edgebpf/edgebpf/netsetup"
	"github.com/edgebpf/edgebpf/stats"
)

// BenchmarkProxyCost measures the proxy program's per-packet cost on an established session
// with BPF test runs of a 64-byte TCP frame, next to an empty TC program, with 1 and with
// 10,000 services × 4 instances installed (two proxies), and the empty program and the first
// proxy behind the chain dispatcher (manager.ChainDispatcher). Each iteration is one round in which
// every program runs costRepeat times in turn, so that the machine's load hits all of them
// alike; the medians over the rounds and the ratios to the empty program are reported:
//
//	go test -run XXX -bench ProxyCost ./dataplanes/ebpf/modules/proxy/
func BenchmarkProxyCost(b *testing.B) {
	node := testenv.Node(b)
	empty, err := emptyprog.Load()
	if err != nil {
		b.Fatal(err)
	}
	defer empty.Close()
	spec := testpkt.Spec{Proto: "tcp", Src: "10.18.0.50", Dst: "10.30.9.1", Sport: 40000, Dport: 80, Payload: make([]byte, 10)}
	frame := testpkt.IPv4(spec)
	proxy := benchProxy(b, node, spec, 0)
	progs := []struct {
		name string
		prog *ebpf.Program
	}{
		{"empty", empty},
		{"dispatcher-empty", benchDispatch(b, empty)},
		{"proxy-1-service", proxy},
		{"dispatcher-proxy-1-service", benchDispatch(b, proxy)},
		{"proxy-10000-services", benchProxy(b, node, spec, 10000)},
	}
	const costRepeat = 100000
	samples := make([][]float64, len(progs))
	b.ResetTimer()
	for range b.N {
		for i, p := range progs {
			_, per, err := p.prog.Benchmark(frame, costRepeat, nil)
			if err != nil {
				b.Fatal(err)
			}
			samples[i] = append(samples[i], float64(per.Nanoseconds()))
		}
	}
	base := stats.Summarize(samples[0]).Median
	for i, p := range progs {
		m := stats.Summarize(samples[i]).Median
		b.ReportMetric(m, "ns/pkt-"+p.name)
		if i > 0 {
			b.ReportMetric(m/base, "x-empty-"+p.name)
		}
	}
}

// benchProxy loads a proxy with the service 10.30.9.1 and extra synthetic services, and
// establishes the session of spec's segment with a SYN. A test run repeats on the same packet, which
// the program rewrites: so that every repetition takes the full session-hit path (lookup,
// checksum updates, address and MAC stores, redirect), the translation maps the packet onto
// itself.
func benchProxy(b *testing.B, node *netsetup.Node, spec testpkt.Spec, extra int) *ebpf.Program {
	p, err := New(node, nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = p.Close() })
	client := &netsetup.Instance{NSIP: netip.MustParseAddr("10.18.0.50"), InstanceIP: netip.MustParseAddr("10.18.0.50"), VethIndex: 1, MAC: make([]byte, 6)}
	if err := p.putClient(client); err != nil {
		b.Fatal(err)
	}
	backend := &netsetup.Instance{NSIP: netip.MustParseAddr("10.30.9.1"), VethIndex: 1, MAC: make([]byte, 6)}
	four := []*netsetup.Instance{backend, backend, backend, backend}
	if err := p.Install(netip.MustParseAddr("10.30.9.1"), "s", four); err != nil {
		b.Fatal(err)
	}
	ip := netip.MustParseAddr("10.30.64.0")
	for range extra {
		ip = ip.Next()
		if err := p.Install(ip, "synthetic", four); err != nil {
			b.Fatal(err)
		}
	}
	spec.SYN = true
	if ret, err := p.objs.ProxyIn.Run(&ebpf.RunOptions{Data: testpkt.IPv4(spec)}); err != nil || ret != tcRedirect {
		b.Fatalf("first run: verdict %d, %v", ret, err)
	}
	return p.objs.ProxyIn
}

// benchDispatch returns a chain dispatcher that runs prog.
func benchDispatch(b *testing.B, prog *ebpf.Program) *ebpf.Program {
	d, closeD, err := manager.Dispatch(prog)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = closeD() })
	return d
}
