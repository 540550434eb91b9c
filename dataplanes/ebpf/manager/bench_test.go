package manager_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"

	"github.com/edgebpf/edgebpf/bench"
	"github.com/edgebpf/edgebpf/dataplanes/ebpf/manager"
	"github.com/edgebpf/edgebpf/dataplanes/ebpf/manager/emptyprog"
	"github.com/edgebpf/edgebpf/dataplanes/ebpf/modules"
	"github.com/edgebpf/edgebpf/dataplanes/ebpf/modules/counter"
	"github.com/edgebpf/edgebpf/dataplanes/ebpf/modules/firewall"
	"github.com/edgebpf/edgebpf/internal/testenv"
	"github.com/edgebpf/edgebpf/internal/testpkt"
	"github.com/edgebpf/edgebpf/netsetup"
	"github.com/edgebpf/edgebpf/stats"
)

// BenchmarkProgramCost measures each module's per-packet cost in the kernel with
// BPF_PROG_TEST_RUN on a 64-byte TCP frame, next to an empty TC program, in one run:
//
//	go test -run XXX -bench ProgramCost ./dataplanes/ebpf/manager/
func BenchmarkProgramCost(b *testing.B) {
	testenv.RequirePrivileged(b)
	frame := testpkt.IPv4(testpkt.Spec{Proto: "tcp", Src: "10.18.0.2", Dst: "10.18.0.3", Sport: 40000, Dport: 5201, Payload: make([]byte, 10)})
	empty, err := emptyprog.Load()
	if err != nil {
		b.Fatal(err)
	}
	defer empty.Close()
	cnt, err := counter.New(nil)
	if err != nil {
		b.Fatal(err)
	}
	defer cnt.Close()
	// Firewalls with n rules, default pass, that the frame matches none of: every run scans
	// all n rules (the worst case) and, matching none, tracks no flow.
	fw := func(n int) *firewall.Firewall {
		f, err := firewall.New(json.RawMessage(`{"default":"pass"}`))
		if err != nil {
			b.Fatal(err)
		}
		var reqs []firewall.RuleRequest
		for i := range n {
			reqs = append(reqs, firewall.RuleRequest{Proto: "udp", DstPort: firewall.PortRange{Lo: uint16(i + 1), Hi: uint16(i + 1)}})
		}
		if _, err := f.Add(reqs...); err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = f.Close() })
		return f
	}
	in := func(m manager.Module) *ebpf.Program { p, _ := m.Programs(); return p }

	// The flow-hit case: a rule allows the frame once, then its flow is tracked and the rules
	// are skipped.
	flow := fw(255)
	if _, err := flow.Add(firewall.RuleRequest{Proto: "tcp", DstPort: firewall.PortRange{Lo: 5201, Hi: 5201}}); err != nil {
		b.Fatal(err)
	}
	if _, err := in(flow).Run(&ebpf.RunOptions{Data: frame}); err != nil {
		b.Fatal(err)
	}
	progs := []struct {
		name string
		prog *ebpf.Program
	}{
		{"empty", empty},
		{"counter", in(cnt)},
		{"firewall-0-rules", in(fw(0))},
		{"firewall-16-rules", in(fw(16))},
		{"firewall-256-rules", in(fw(256))},
		{"firewall-flow-hit", in(flow)},
	}
	var base time.Duration
	for _, p := range progs {
		b.Run(p.name, func(b *testing.B) {
			// One test run of b.N repetitions: the kernel times the program alone.
			_, per, err := p.prog.Benchmark(frame, b.N, nil)
			if err != nil {
				b.Fatal(err)
			}
			if p.name == "empty" {
				base = per
			}
			b.ReportMetric(float64(per.Nanoseconds()), "ns/pkt")
			if base > 0 {
				b.ReportMetric(float64(per)/float64(base), "x-empty")
			}
		})
	}
}

// BenchmarkChainThroughput runs TCP bulk streams through a node without modules and with
// counter + firewall chained, alternating, in one run:
//
//	go test -run XXX -bench ChainThroughput -benchtime 1x ./dataplanes/ebpf/manager/
func BenchmarkChainThroughput(b *testing.B) {
	node := testenv.Node(b, "client", "server")
	m, err := manager.New(node, modules.Catalogue())
	if err != nil {
		b.Fatal(err)
	}
	defer m.Close()
	client, _ := node.Instance("client", 0)
	server, _ := node.Instance("server", 0)
	ep := bench.Endpoints{Client: client.NS, Server: server.NS, Target: server.NSIP}
	stream := func() float64 {
		s, err := bench.TCPThroughput(context.Background(), ep, bench.TCPThroughputConfig{Duration: bench.Duration(3 * time.Second), Interval: bench.Duration(500 * time.Millisecond), Omit: bench.Duration(500 * time.Millisecond)})
		if err != nil {
			b.Fatal(err)
		}
		var vs []float64
		for _, x := range s {
			vs = append(vs, x.Value)
		}
		return stats.Summarize(vs).Median
	}
	var bare, chained []float64
	for round := range 3 {
		bare = append(bare, stream())
		if _, err := m.Create("counter", nil); err != nil {
			b.Fatal(err)
		}
		fw, err := m.Create("firewall", nil)
		if err != nil {
			b.Fatal(err)
		}
		rule := fmt.Sprintf(`{"proto":"tcp","srcIp":"%s","dstIp":"%s","dstPort":5202}`, client.NSIP, server.NSIP)
		if err := addRule(m, fw.ID, rule); err != nil {
			b.Fatal(err)
		}
		chained = append(chained, stream())
		if _, err := m.DeleteAll(); err != nil {
			b.Fatal(err)
		}
		b.Logf("round %d: bare %.2f Gbit/s, counter+firewall %.2f Gbit/s", round, bare[round]/1e9, chained[round]/1e9)
	}
	mb, mc := stats.Summarize(bare).Median, stats.Summarize(chained).Median
	b.ReportMetric(mb/1e9, "Gbit/s-bare")
	b.ReportMetric(mc/1e9, "Gbit/s-chained")
	b.ReportMetric(mc/mb, "ratio")
}

// BenchmarkAttach200 times creating the counter and the firewall on a node of 200 instances.
//
//	go test -run XXX -bench Attach200 -benchtime 1x ./dataplanes/ebpf/manager/
func BenchmarkAttach200(b *testing.B) {
	node := testenv.Node(b)
	if _, err := node.AddService("many"); err != nil {
		b.Fatal(err)
	}
	for range 200 {
		if _, err := node.AddInstance("many"); err != nil {
			b.Fatal(err)
		}
	}
	m, err := manager.New(node, modules.Catalogue())
	if err != nil {
		b.Fatal(err)
	}
	defer m.Close()
	b.ResetTimer()
	for range b.N {
		start := time.Now()
		if _, err := m.Create("counter", nil); err != nil {
			b.Fatal(err)
		}
		if _, err := m.Create("firewall", json.RawMessage(`{"default":"pass"}`)); err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(time.Since(start).Seconds(), "s-attach-both")
		b.StopTimer()
		if _, err := m.DeleteAll(); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
}

// addRule posts a firewall rule through the manager's API.
func addRule(m *manager.Manager, id int, rule string) error {
	rec := httptest.NewRecorder()
	req := httptest.NewRequest("POST", fmt.Sprintf("/ebpf/%d/rule", id), strings.NewReader(rule))
	req.Host = "localhost"
	req.Header.Set("Content-Type", "application/json")
	m.Handler().ServeHTTP(rec, req)
	if rec.Code != 201 {
		return fmt.Errorf("add rule: %d %s", rec.Code, rec.Body)
	}
	return nil
}

// BenchmarkTCXAttachOne times attaching the empty program to one veth's TCX ingress hook and
// detaching it again, one at a time: the kernel's cost per TCX attach and per detach, without
// the manager. Compare it under different conditions (an idle and a loaded machine,
// /sys/kernel/rcu_expedited 0 and 1) to see what the per-attach cost depends on.
//
//	go test -run XXX -bench TCXAttachOne -benchtime 50x ./dataplanes/ebpf/manager/
func BenchmarkTCXAttachOne(b *testing.B) {
	node := testenv.Node(b, "one")
	in, err := node.AddInstance("one")
	if err != nil {
		b.Fatal(err)
	}
	prog, err := emptyprog.Load()
	if err != nil {
		b.Fatal(err)
	}
	defer prog.Close()
	var attach, detach time.Duration
	b.ResetTimer()
	for range b.N {
		err := node.NS.Do(func() error {
			start := time.Now()
			l, err := link.AttachTCX(link.TCXOptions{Interface: in.VethIndex, Program: prog, Attach: ebpf.AttachTCXIngress})
			if err != nil {
				return err
			}
			attach += time.Since(start)
			start = time.Now()
			err = l.Close()
			detach += time.Since(start)
			return err
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(attach.Microseconds())/1e3/float64(b.N), "ms/attach")
	b.ReportMetric(float64(detach.Microseconds())/1e3/float64(b.N), "ms/detach")
}

// BenchmarkChainModes compares the chain modes' control-plane costs, interleaved: every
// iteration, in each mode, creates a counter on a node of 200 instances and deletes it again,
// and adds one instance to a node with 4 modules (counter, firewall, counter, firewall) and
// removes it again. It reports the medians in ms per mode and the ratios tcx / dispatcher:
//
//	go test -run XXX -bench ChainModes -benchtime 5x ./dataplanes/ebpf/manager/
func BenchmarkChainModes(b *testing.B) {
	testenv.RequirePrivileged(b)
	if err := manager.ProbeDispatcher(); err != nil {
		b.Skip(err)
	}
	type side struct {
		many, four *manager.Manager
		node4      *netsetup.Node
		ms         map[string][]float64
	}
	sides := map[manager.Chain]*side{}
	for _, c := range manager.ChainModes {
		s := &side{ms: map[string][]float64{}}
		node := testenv.Node(b)
		if _, err := node.AddService("many"); err != nil {
			b.Fatal(err)
		}
		var err error
		if s.many, err = manager.New(node, modules.Catalogue(), manager.WithChain(c)); err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = s.many.Close() })
		for range 200 {
			if _, err := node.AddInstance("many"); err != nil {
				b.Fatal(err)
			}
		}
		s.node4 = testenv.Node(b, "a", "b")
		if _, err := s.node4.AddService("late"); err != nil {
			b.Fatal(err)
		}
		if s.four, err = manager.New(s.node4, modules.Catalogue(), manager.WithChain(c)); err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = s.four.Close() })
		for i := range 4 {
			name, cfg := "counter", json.RawMessage(nil)
			if i%2 == 1 {
				name, cfg = "firewall", json.RawMessage(`{"default":"pass"}`)
			}
			if _, err := s.four.Create(name, cfg); err != nil {
				b.Fatal(err)
			}
		}
		sides[c] = s
	}
	timed := func(s *side, what string, fn func() error) {
		start := time.Now()
		if err := fn(); err != nil {
			b.Fatal(err)
		}
		s.ms[what] = append(s.ms[what], float64(time.Since(start).Microseconds())/1e3)
	}
	b.ResetTimer()
	for range b.N {
		for _, c := range manager.ChainModes {
			s := sides[c]
			var id int
			timed(s, "create-200", func() error {
				inf, err := s.many.Create("counter", nil)
				id = inf.ID
				return err
			})
			timed(s, "delete-200", func() error { return s.many.Delete(id) })
			var in *netsetup.Instance
			timed(s, "add-instance-4", func() (err error) { in, err = s.node4.AddInstance("late"); return err })
			timed(s, "remove-instance-4", func() error { return s.node4.RemoveInstance(in) })
		}
	}
	for _, what := range []string{"create-200", "delete-200", "add-instance-4", "remove-instance-4"} {
		tcx := stats.Summarize(sides[manager.ChainTCX].ms[what]).Median
		disp := stats.Summarize(sides[manager.ChainDispatcher].ms[what]).Median
		b.ReportMetric(tcx, "ms-tcx-"+what)
		b.ReportMetric(disp, "ms-dispatcher-"+what)
		b.ReportMetric(tcx/disp, "x-"+what)
	}
}
