package nftables

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/edgebpf/edgebpf/internal/testenv"
	"github.com/edgebpf/edgebpf/netsetup"
)

// The figures of issue 4: the time to install 10,000 services x 4 instances, and connect
// time and throughput through a node holding 1 or 10,000 services. A node subnet holds only
// 253 instance namespaces, so the 10,000 services are synthetic: entries with namespace IPs
// that exist nowhere, installed through the same path as the registry's.
//
//	go test -run XXX -bench . ./dataplanes/nftables/

const (
	manyServices = 10000
	perService   = 4
)

// synthetic returns n services with k backends each. Service and instance IPs are taken
// from the service range after the first 1024 addresses (which a real node's registry uses);
// namespace IPs from 10.64.0.0/10, where nothing answers.
func synthetic(svcNet netip.Prefix, n, k int) []entry {
	next := svcNet.Addr()
	for range 1024 {
		next = next.Next()
	}
	take := func() netip.Addr { a := next; next = next.Next(); return a }
	nsip := netip.MustParseAddr("10.64.0.1")
	out := make([]entry, n)
	for i := range out {
		out[i].IP = take()
		for range k {
			out[i].Backends = append(out[i].Backends, backend{NSIP: nsip, InstanceIP: take()})
			nsip = nsip.Next()
		}
	}
	return out
}

var slow = flag.Bool("slow", false, "also time installing 10,000 services in one batch each (about 8 minutes)")

// BenchmarkInstall times installing 10,000 services x 4 instances into an empty table: in one
// batch, and (with -slow) in one batch per service, as a registry would add them one by one.
func BenchmarkInstall(b *testing.B) {
	node := testenv.Node(b)
	svcNet := node.Config().ServiceRange
	entries := synthetic(svcNet, manyServices, perService)
	for _, mode := range []string{"one-batch", "per-service-batches"} {
		b.Run(fmt.Sprintf("services=%d/instances=%d/%s", manyServices, manyServices*perService, mode), func(b *testing.B) {
			if mode != "one-batch" && !*slow {
				b.Skip("one batch per service takes minutes (each commit validates the whole table): run with -args -slow")
			}
			for b.Loop() {
				b.StopTimer()
				r, err := newRuleset(int(node.NS.Handle()), svcNet)
				require.NoError(b, err)
				b.StartTimer()
				if mode == "one-batch" {
					err = r.install(entries)
				} else {
					for _, e := range entries {
						if err = r.install([]entry{e}); err != nil {
							break
						}
					}
				}
				b.StopTimer()
				require.NoError(b, err)
				require.Len(b, r.installed, manyServices)
				require.NoError(b, r.destroy())
				b.StartTimer()
			}
			b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N)/manyServices, "us/service")
		})
	}
}

// BenchmarkUpdate times one change (one batch) on a table holding 1 or 10,000 services x 4:
// an instance added to a service, then removed again. Every commit that adds a goto makes
// the kernel validate the whole table, so a change costs in proportion to the table's size.
func BenchmarkUpdate(b *testing.B) {
	node := testenv.Node(b)
	svcNet := node.Config().ServiceRange
	for _, n := range []int{1, manyServices} {
		b.Run(fmt.Sprintf("services=%d", n), func(b *testing.B) {
			r, err := newRuleset(int(node.NS.Handle()), svcNet)
			require.NoError(b, err)
			b.Cleanup(func() { require.NoError(b, r.destroy()) })
			entries := synthetic(svcNet, n, perService+1)
			full := entries[0].Backends
			for i := range entries {
				entries[i].Backends = entries[i].Backends[:perService]
			}
			require.NoError(b, r.install(entries))
			for b.Loop() {
				if _, err := r.setBackends(entries[0].IP, full); err != nil {
					b.Fatal(err)
				}
				if _, err := r.setBackends(entries[0].IP, full[:perService]); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(2*b.N), "us/change")
		})
	}
}

// proxiedNode is a node with one client and one server instance behind the nftables data
// plane, plus extra synthetic services. The server accepts TCP on port and discards input.
func proxiedNode(b *testing.B, extra int) (client *netsetup.Instance, target string) {
	node := testenv.Node(b, "client")
	dp := New()
	require.NoError(b, dp.Deploy(context.Background(), node))
	b.Cleanup(func() { require.NoError(b, dp.Close()) })
	svc, err := node.AddService("server")
	require.NoError(b, err)
	server, err := node.AddInstance("server")
	require.NoError(b, err)
	if extra > 0 {
		dp.mu.Lock()
		err = dp.rules.install(synthetic(node.Config().ServiceRange, extra, perService))
		dp.mu.Unlock()
		require.NoError(b, err)
	}
	var ln net.Listener
	require.NoError(b, server.NS.Do(func() (err error) {
		ln, err = net.Listen("tcp4", ":7402")
		return err
	}))
	done := make(chan struct{})
	b.Cleanup(func() { ln.Close(); <-done })
	go func() {
		defer close(done)
		var wg sync.WaitGroup
		defer wg.Wait()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() { _, _ = io.Copy(io.Discard, c); c.Close() })
		}
	}()
	client, _ = node.Instance("client", 0)
	return client, netip.AddrPortFrom(svc.IP, 7402).String()
}

// BenchmarkConnect times a TCP connect to the service IP: every connect is a new session,
// so it crosses the prerouting vmap lookup, the balancing rule and DNAT/SNAT.
func BenchmarkConnect(b *testing.B) {
	for _, n := range []int{1, manyServices} {
		b.Run(fmt.Sprintf("services=%d", n), func(b *testing.B) {
			client, target := proxiedNode(b, n-1)
			// The loop runs inside the client namespace; closing with linger 0 resets the
			// connection, so no TIME_WAIT state eats the client's ports.
			require.NoError(b, client.NS.Do(func() error {
				d := net.Dialer{Timeout: 2 * time.Second}
				for b.Loop() {
					c, err := d.Dial("tcp4", target)
					if err != nil {
						return err
					}
					_ = c.(*net.TCPConn).SetLinger(0)
					c.Close()
				}
				return nil
			}))
		})
	}
}

// BenchmarkStream measures one TCP stream through the service IP: established packets only
// meet conntrack, not the table's rules.
func BenchmarkStream(b *testing.B) {
	for _, n := range []int{1, manyServices} {
		b.Run(fmt.Sprintf("services=%d", n), func(b *testing.B) {
			client, target := proxiedNode(b, n-1)
			var c net.Conn
			require.NoError(b, client.NS.Do(func() (err error) {
				c, err = net.DialTimeout("tcp4", target, 2*time.Second)
				return err
			}))
			defer c.Close()
			buf := make([]byte, 64<<10)
			b.SetBytes(int64(len(buf)))
			for b.Loop() {
				if _, err := c.Write(buf); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
