// Package proxytest is the end-to-end suite every service proxy (userspace, ebpf, nftables)
// must pass on a real node: TCP and UDP through a service IP with the server seeing the
// client's instance IP and the client seeing only the service IP, stickiness, round-robin
// spread, instance-IP addressing, instances added and removed while traffic flows, the first
// packet of a session delivered with a cold cache, and fast failure for a service without
// instances. RunCluster is the same across the workers of a cluster, a data plane deployed on
// each: client on worker 0, server on worker 1. Serve, AskTCP and AskUDP are its server and
// client, for data planes' own tests.
package proxytest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/edgebpf/edgebpf/dataplanes"
	"github.com/edgebpf/edgebpf/internal/testenv"
	"github.com/edgebpf/edgebpf/netsetup"
)

// DataPlane is the data plane under test: the interface every data plane implements.
type DataPlane = dataplanes.DataPlane

const port = 7400

// fixture is a node with a client and a two-instance server behind a deployed data plane.
type fixture struct {
	t      *testing.T
	node   *netsetup.Node
	client *netsetup.Instance
	server netsetup.Service
}

func setup(t *testing.T, newDP func() DataPlane) *fixture {
	node := testenv.Node(t)
	dp := newDP()
	require.NoError(t, dp.Deploy(context.Background(), node))
	t.Cleanup(func() { assert.NoError(t, dp.Close()) })
	f := &fixture{t: t, node: node}
	_, err := node.AddService("client")
	require.NoError(t, err)
	f.client, err = node.AddInstance("client")
	require.NoError(t, err)
	f.server, err = node.AddService("server")
	require.NoError(t, err)
	for range 2 {
		f.addServer()
	}
	target, err := dp.Target(f.server)
	require.NoError(t, err)
	require.Equal(t, f.server.IP, target, "a proxy's clients address the service IP")
	return f
}

// addServer adds a server instance that answers TCP and UDP on port with its own name and
// the address it saw the request come from.
func (f *fixture) addServer() *netsetup.Instance {
	in, err := f.node.AddInstance("server")
	require.NoError(f.t, err)
	Serve(f.t, in)
	return in
}

// answer is which instance answered and the address it saw the client as.
type answer struct{ instance, seen string }

func parse(s string) (answer, error) {
	name, addr, ok := strings.Cut(strings.TrimSpace(s), " ")
	if !ok {
		return answer{}, fmt.Errorf("unexpected answer %q", s)
	}
	host, _, err := net.SplitHostPort(addr)
	return answer{instance: name, seen: host}, err
}

// askTCP opens a fresh TCP connection from the client to target:port.
func (f *fixture) askTCP(target netip.Addr) (answer, error) {
	var a answer
	err := f.client.NS.Do(func() error {
		c, err := net.DialTimeout("tcp4", netip.AddrPortFrom(target, port).String(), 2*time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(2 * time.Second))
		buf := make([]byte, 256)
		n, err := c.Read(buf)
		if err != nil {
			return err
		}
		a, err = parse(string(buf[:n]))
		return err
	})
	return a, err
}

// udpSession is a connected UDP socket in the client: replies from any address other than
// the one it sent to are dropped by the kernel, so an answer proves the source was rewritten.
type udpSession struct{ c net.Conn }

func (f *fixture) udp(target netip.Addr) *udpSession {
	var c net.Conn
	require.NoError(f.t, f.client.NS.Do(func() (err error) {
		c, err = net.Dial("udp4", netip.AddrPortFrom(target, port).String())
		return err
	}))
	f.t.Cleanup(func() { c.Close() })
	return &udpSession{c: c}
}

// ask sends one datagram and waits for the answer, without retrying.
func (u *udpSession) ask() (answer, error) {
	if _, err := u.c.Write([]byte("?")); err != nil {
		return answer{}, err
	}
	_ = u.c.SetReadDeadline(time.Now().Add(2 * time.Second))
	buf := make([]byte, 256)
	n, err := u.c.Read(buf)
	if err != nil {
		return answer{}, err
	}
	return parse(string(buf[:n]))
}

// Run runs the suite against fresh data planes from newDP: every case on a node of its own.
func Run(t *testing.T, newDP func() DataPlane) {
	cases := []struct {
		name string
		run  func(*testing.T, *fixture)
	}{
		{"tcp through service ip", tcpThroughServiceIP},
		{"udp through service ip, first packet with a cold cache", udpColdFirstPacket},
		{"sessions stick to their instance", sessionsStick},
		{"new sessions are spread round-robin", roundRobin},
		{"an instance ip reaches exactly that instance", instanceIP},
		{"instances added and removed while traffic flows", instancesChange},
		{"a service without instances fails fast", emptyServiceFailsFast},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) { c.run(t, setup(t, newDP)) })
	}
}

// tcpThroughServiceIP checks that a TCP connection to the service IP reaches a server
// instance, which sees the client's instance IP.
func tcpThroughServiceIP(t *testing.T, f *fixture) {
	a, err := f.askTCP(f.server.IP)
	require.NoError(t, err)
	assert.True(t, strings.HasPrefix(a.instance, "server-"), a.instance)
	assert.Equal(t, f.client.InstanceIP.String(), a.seen, "the server sees the client's instance IP")
}

// udpColdFirstPacket checks that the first datagram of every fresh UDP session is delivered
// and answered from the service IP.
func udpColdFirstPacket(t *testing.T, f *fixture) {
	for range 5 {
		a, err := f.udp(f.server.IP).ask() // one datagram per fresh session, no retry
		require.NoError(t, err, "the first packet of a session is delivered and answered from the service IP")
		assert.Equal(t, f.client.InstanceIP.String(), a.seen)
	}
}

// sessionsStick checks that a UDP session stays on its instance.
func sessionsStick(t *testing.T, f *fixture) {
	u := f.udp(f.server.IP)
	first, err := u.ask()
	require.NoError(t, err)
	for range 50 {
		a, err := u.ask()
		require.NoError(t, err)
		require.Equal(t, first.instance, a.instance)
	}
}

// roundRobin checks that new sessions are spread round-robin, not at random.
func roundRobin(t *testing.T, f *fixture) {
	seen := map[string]int{}
	for range 20 {
		a, err := f.askTCP(f.server.IP)
		require.NoError(t, err)
		seen[a.instance]++
	}
	require.Len(t, seen, 2, "%v", seen)
	assert.InDelta(t, seen["server-0"], seen["server-1"], 2, "round-robin, not random: %v", seen)
}

// instanceIP checks that an instance IP reaches exactly that instance.
func instanceIP(t *testing.T, f *fixture) {
	for _, in := range f.node.Registry.Instances("server") {
		for range 3 {
			a, err := f.askTCP(in.InstanceIP)
			require.NoError(t, err)
			assert.Equal(t, in.Name, a.instance)
			assert.Equal(t, f.client.InstanceIP.String(), a.seen)
		}
	}
}

// instancesChange adds and removes instances while traffic flows: new sessions use an added
// instance at once and never a removed one.
func instancesChange(t *testing.T, f *fixture) {
	old := f.udp(f.server.IP)
	before, err := old.ask()
	require.NoError(t, err)

	f.addServer()
	seen := map[string]int{}
	for range 30 {
		a, err := f.askTCP(f.server.IP)
		require.NoError(t, err)
		seen[a.instance]++
	}
	assert.Len(t, seen, 3, "new sessions use the new instance at once: %v", seen)

	gone, _ := f.node.Instance("server", indexOf(before.instance))
	require.NoError(t, f.node.RemoveInstance(gone))
	for range 20 {
		a, err := f.askTCP(f.server.IP)
		require.NoError(t, err, "new sessions go to the remaining instances")
		assert.NotEqual(t, gone.Name, a.instance)
	}
	// The old session's instance is gone: its next datagram is not sent there. It may
	// start a new session on a remaining instance (as conntrack-based proxies do) or get
	// no answer, but it is never answered as if the removed instance were alive.
	if a, err := old.ask(); err == nil {
		assert.NotEqual(t, gone.Name, a.instance)
	}
}

// emptyServiceFailsFast checks that a service without instances is refused within a second,
// not left to time out.
func emptyServiceFailsFast(t *testing.T, f *fixture) {
	empty, err := f.node.AddService("empty")
	require.NoError(t, err)
	start := time.Now()
	_, err = f.askTCP(empty.IP)
	require.Error(t, err)
	assert.Less(t, time.Since(start), time.Second, "refused or unreachable, not a hang: %v", err)
	var ne net.Error
	assert.False(t, errors.As(err, &ne) && ne.Timeout(), "not a timeout: %v", err)
}

func indexOf(name string) int {
	var i int
	_, _ = fmt.Sscanf(name[strings.LastIndexByte(name, '-')+1:], "%d", &i)
	return i
}

// halfClosedPort is where HalfClosed's servers listen.
const halfClosedPort = port + 1

// halfClosedReply is what a HalfClosed server sends after the client has shut down its write
// side: several windows' worth, so that the client's ACKs keep flowing while it arrives.
const halfClosedReply = 64 << 10

// HalfClosed checks that TCP connections whose client has shut down its write side (sent FIN)
// still complete when the server answers delay later, with conns connections open at once to a
// service of two instances. An odd conns matters: a proxy that forgets a session on the
// client's FIN and balances the client's next ACK anew sends it, with round robin over two
// instances, to the other instance, which answers with a reset; with an even number round
// robin happens to pick the same instance again. delay must exceed how long the data plane
// keeps a session after one FIN (give it a short closing timeout to keep the test quick).
// It returns how many connections completed, for the report.
func HalfClosed(t *testing.T, newDP func() DataPlane, conns int, delay time.Duration) int {
	f := setup(t, newDP)
	for _, in := range f.node.Registry.Instances("server") {
		var ln net.Listener
		require.NoError(t, in.NS.Do(func() (err error) {
			ln, err = net.Listen("tcp4", fmt.Sprintf(":%d", halfClosedPort))
			return err
		}))
		t.Cleanup(func() { ln.Close() })
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				go func() {
					defer c.Close()
					if _, err := io.Copy(io.Discard, c); err != nil { // until the client's FIN
						return
					}
					time.Sleep(delay)
					_, _ = c.Write(make([]byte, halfClosedReply))
				}()
			}
		}()
	}
	type result struct {
		n   int64
		err error
	}
	results := make(chan result, conns)
	for i := range conns {
		var c *net.TCPConn
		require.NoError(t, f.client.NS.Do(func() error {
			nc, err := net.DialTimeout("tcp4", netip.AddrPortFrom(f.server.IP, halfClosedPort).String(), 2*time.Second)
			if err != nil {
				return fmt.Errorf("connection %d: %w", i, err)
			}
			c = nc.(*net.TCPConn)
			return nil
		}))
		go func() {
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(delay + 10*time.Second))
			if _, err := c.Write([]byte("request")); err != nil {
				results <- result{err: err}
				return
			}
			if err := c.CloseWrite(); err != nil {
				results <- result{err: err}
				return
			}
			n, err := io.Copy(io.Discard, c)
			results <- result{n: n, err: err}
		}()
	}
	done := 0
	for range conns {
		r := <-results
		if r.err == nil && r.n == halfClosedReply {
			done++
		} else {
			t.Logf("half-closed connection: %d of %d bytes, %v", r.n, halfClosedReply, r.err)
		}
	}
	t.Logf("half-closed connections completed: %d of %d", done, conns)
	assert.Equal(t, conns, done, "every half-closed connection completes")
	return done
}
