package tunnel

import (
	"net/netip"
	"testing"

	"github.com/cilium/ebpf"

	"github.com/edgebpf/edgebpf/dataplanes/ebpf/manager/emptyprog"
	"github.com/edgebpf/edgebpf/internal/testpkt"
	"github.com/edgebpf/edgebpf/netsetup"
	"github.com/edgebpf/edgebpf/stats"
)

// BenchmarkTunnelCost measures the per-packet cost of the tunnel's two ends with BPF test
// runs, next to the empty TC program and the proxy's local session hit: the proxy's session
// hit to a remote backend (translation, encapsulation, redirect), and the decapsulation of a
// request to a local instance and of a reply it reverse-translates. Every program changes the
// packet it runs on (a wrapped packet is no longer one to wrap), so each run is a test run of
// its own with one repetition, and the kernel's time of that one run is the sample; each
// iteration is one round in which every program runs calls times in turn, so that the
// machine's load hits all of them alike. Reported: the medians over the rounds of each
// round's median, and the ratios to the empty program.
//
//	go test -run XXX -bench TunnelCost ./dataplanes/ebpf/modules/tunnel/
func BenchmarkTunnelCost(b *testing.B) {
	r := newRig(b)
	empty, err := emptyprog.Load()
	if err != nil {
		b.Fatal(err)
	}
	defer empty.Close()
	proxyIn, _ := r.p.Programs()

	// A client of this worker (veth 1), a local service and a remote one.
	cl := tunnelPxClient{InstanceIp: be32(netip.MustParseAddr("10.30.0.100")), Ifindex: 1}
	if err := r.p.Shared().Clients.Update(be32(netip.MustParseAddr("10.18.0.50")), &cl, ebpf.UpdateAny); err != nil {
		b.Fatal(err)
	}
	local := &netsetup.Instance{NSIP: netip.MustParseAddr("10.18.0.60"), VethIndex: 1, MAC: make([]byte, 6)}
	remote := &netsetup.Instance{NSIP: netip.MustParseAddr("10.18.1.9"), NodeIP: netip.MustParseAddr(peerIP)}
	for svc, be := range map[string]*netsetup.Instance{"10.30.5.1": local, "10.30.5.2": remote} {
		if err := r.p.Install(netip.MustParseAddr(svc), "s", []*netsetup.Instance{be}); err != nil {
			b.Fatal(err)
		}
	}
	seg := func(dst string, syn bool) []byte {
		return testpkt.IPv4(testpkt.Spec{Proto: "tcp", Src: "10.18.0.50", Dst: dst, Sport: 40000, Dport: 80, SYN: syn, Payload: make([]byte, 10)})
	}
	reply := testpkt.Tunnel(peerIP, localIP, Port, Port, packet(testpkt.IPv4(testpkt.Spec{Proto: "tcp",
		Src: "10.18.1.9", Dst: "10.30.0.100", Sport: 80, Dport: 40000, Payload: make([]byte, 10)})))
	progs := []struct {
		name  string
		prog  *ebpf.Program
		frame []byte
		want  uint32
	}{
		{"empty", empty, seg("10.30.5.1", false), tcxNext},
		{"proxy-local", proxyIn, seg("10.30.5.1", false), tcRedirect},
		{"proxy-encap", proxyIn, seg("10.30.5.2", false), tcRedirect},
		{"decap-deliver", r.tu.objs.TunnelDecap, testpkt.Tunnel(peerIP, localIP, Port, Port, forward()), tcRedirect},
		{"decap-reverse", r.tu.objs.TunnelDecap, reply, tcRedirect},
	}
	// The sessions: a SYN to each service.
	for _, dst := range []string{"10.30.5.1", "10.30.5.2"} {
		if ret, err := proxyIn.Run(&ebpf.RunOptions{Data: seg(dst, true)}); err != nil || ret != tcRedirect {
			b.Fatalf("SYN to %s: verdict %d, %v", dst, ret, err)
		}
	}
	const calls = 2000
	samples := make([][]float64, len(progs))
	round := make([]float64, calls)
	b.ResetTimer()
	for range b.N {
		for i, p := range progs {
			for j := range round {
				ret, per, err := p.prog.Benchmark(p.frame, 1, nil)
				if err != nil || ret != p.want {
					b.Fatalf("%s: verdict %d, %v", p.name, ret, err)
				}
				round[j] = float64(per.Nanoseconds())
			}
			samples[i] = append(samples[i], stats.Summarize(round).Median)
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
