package proxytest

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/edgebpf/edgebpf/internal/testenv"
	"github.com/edgebpf/edgebpf/netsetup"
)

// Port is where Serve's servers listen, TCP and UDP.
const Port = port

// Answer is which instance answered and the address it saw the client as.
type Answer struct{ Instance, Seen string }

// Serve starts, in the (local) instance's namespace, a server that answers TCP and UDP on
// Port with the instance's name and the address it saw the request come from. The test's
// cleanup stops it.
func Serve(t testing.TB, in *netsetup.Instance) {
	t.Helper()
	var ln net.Listener
	var pc net.PacketConn
	require.NoError(t, in.NS.Do(func() (err error) {
		if ln, err = net.Listen("tcp4", fmt.Sprintf(":%d", port)); err != nil {
			return err
		}
		pc, err = net.ListenPacket("udp4", fmt.Sprintf(":%d", port))
		return err
	}))
	t.Cleanup(func() { ln.Close(); pc.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_, _ = fmt.Fprintf(c, "%s %s\n", in.Name, c.RemoteAddr())
			c.Close()
		}
	}()
	go func() {
		buf := make([]byte, 64<<10)
		for {
			_, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			_, _ = pc.WriteTo([]byte(fmt.Sprintf("%s %s", in.Name, from)), from)
		}
	}()
}

// AskTCP opens a fresh TCP connection from ns to target:Port and reads Serve's answer.
func AskTCP(ns *netsetup.Namespace, target netip.Addr) (Answer, error) {
	var a Answer
	err := ns.Do(func() error {
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
		a, err = parseAnswer(string(buf[:n]))
		return err
	})
	return a, err
}

// AskUDP sends one datagram of size bytes (at least 1) from a fresh socket in ns connected
// to target:Port, without retrying, and reads Serve's answer. The socket is connected, so the
// kernel drops a reply from any other address: an answer proves it came from target.
func AskUDP(ns *netsetup.Namespace, target netip.Addr, size int) (Answer, error) {
	var a Answer
	err := ns.Do(func() error {
		c, err := net.Dial("udp4", netip.AddrPortFrom(target, port).String())
		if err != nil {
			return err
		}
		defer c.Close()
		if _, err := c.Write(make([]byte, max(size, 1))); err != nil {
			return err
		}
		_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
		buf := make([]byte, 256)
		n, err := c.Read(buf)
		if err != nil {
			return err
		}
		a, err = parseAnswer(string(buf[:n]))
		return err
	})
	return a, err
}

func parseAnswer(s string) (Answer, error) {
	a, err := parse(s)
	return Answer{Instance: a.instance, Seen: a.seen}, err
}

// clusterFixture is a two-worker cluster with a client on worker 0 and a server on worker 1,
// a data plane deployed on each worker.
type clusterFixture struct {
	c      *netsetup.Cluster
	client *netsetup.Instance
	server netsetup.Service
}

// DeployCluster deploys a fresh data plane on every worker of c, closed on the test's
// cleanup, and returns them in the workers' order. Worker i's comes from newDPs[i], the last
// constructor serving the workers beyond: one constructor deploys the same data plane
// everywhere, several make a mixed cluster.
func DeployCluster(t testing.TB, c *netsetup.Cluster, newDPs ...func() DataPlane) []DataPlane {
	t.Helper()
	var dps []DataPlane
	for i, w := range c.Workers {
		dp := newDPs[min(i, len(newDPs)-1)]()
		require.NoError(t, dp.Deploy(context.Background(), w))
		t.Cleanup(func() { assert.NoError(t, dp.Close()) })
		dps = append(dps, dp)
	}
	return dps
}

func setupCluster(t *testing.T, newDPs []func() DataPlane) *clusterFixture {
	c := testenv.Cluster(t, netsetup.ClusterConfig{}, "client@0", "server@1")
	dps := DeployCluster(t, c, newDPs...)
	f := &clusterFixture{c: c}
	f.client, _ = c.Workers[0].Instance("client", 0)
	f.server, _ = c.Workers[0].Registry.Service("server")
	srv, ok := c.Workers[1].Instance("server", 0)
	require.True(t, ok)
	Serve(t, srv)
	target, err := dps[0].Target(f.server)
	require.NoError(t, err)
	require.Equal(t, f.server.IP, target, "a proxy's clients address the service IP")
	return f
}

// RunCluster runs the cross-worker suite against fresh data planes, one on each worker of a
// two-worker cluster: the client on worker 0, the server on worker 1. One constructor puts
// the same data plane on both; two make a mixed cluster (worker 0's first), which is how
// tunnels of different data planes are shown to interoperate.
func RunCluster(t *testing.T, newDPs ...func() DataPlane) {
	cases := []struct {
		name string
		run  func(*testing.T, *clusterFixture)
	}{
		{"tcp through service ip across workers", crossTCP},
		{"udp through service ip across workers", crossUDP},
		{"a remote instance ip reaches that instance", crossInstanceIP},
		{"a service with instances on both workers spreads over both", crossSpread},
		{"instances added after deployment reach each other across workers", crossAddedLater},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) { c.run(t, setupCluster(t, newDPs)) })
	}
}

func crossTCP(t *testing.T, f *clusterFixture) {
	for range 3 {
		a, err := AskTCP(f.client.NS, f.server.IP)
		require.NoError(t, err, "a connection to the service IP is answered from the service IP")
		assert.Equal(t, "server-0", a.Instance)
		assert.Equal(t, f.client.InstanceIP.String(), a.Seen, "the server sees the client's instance IP")
	}
}

func crossUDP(t *testing.T, f *clusterFixture) {
	for range 3 {
		a, err := AskUDP(f.client.NS, f.server.IP, 1)
		require.NoError(t, err, "the first datagram of a session crosses and is answered from the service IP")
		assert.Equal(t, "server-0", a.Instance)
		assert.Equal(t, f.client.InstanceIP.String(), a.Seen, "the server sees the client's instance IP")
	}
}

func crossInstanceIP(t *testing.T, f *clusterFixture) {
	in := f.c.Workers[0].Registry.Instances("server")[0]
	require.True(t, in.Remote())
	a, err := AskTCP(f.client.NS, in.InstanceIP)
	require.NoError(t, err)
	assert.Equal(t, in.Name, a.Instance)
	assert.Equal(t, f.client.InstanceIP.String(), a.Seen)
}

func crossSpread(t *testing.T, f *clusterFixture) {
	local, err := f.c.AddInstance("server", 0)
	require.NoError(t, err)
	Serve(t, local)
	seen := map[string]int{}
	for range 20 {
		a, err := AskTCP(f.client.NS, f.server.IP)
		require.NoError(t, err)
		assert.Equal(t, f.client.InstanceIP.String(), a.Seen)
		seen[a.Instance]++
	}
	require.Len(t, seen, 2, "sessions go to the instances on both workers: %v", seen)
	assert.InDelta(t, seen["server-0"], seen["server-1"], 2, "round-robin: %v", seen)
	for name := range seen {
		assert.True(t, strings.HasPrefix(name, "server-"), name)
	}
}

// crossAddedLater: a client added on worker 1 and a server added on worker 0 after the data
// planes were deployed reach each other: the data planes followed the registry's events for
// the local and the remote instances alike.
func crossAddedLater(t *testing.T, f *clusterFixture) {
	client, err := f.c.AddInstance("client", 1)
	require.NoError(t, err)
	srv, err := f.c.AddInstance("server", 0)
	require.NoError(t, err)
	Serve(t, srv)
	a, err := AskTCP(client.NS, srv.InstanceIP)
	require.NoError(t, err)
	assert.Equal(t, Answer{Instance: srv.Name, Seen: client.InstanceIP.String()}, a)
	a, err = AskUDP(client.NS, srv.InstanceIP, 1)
	require.NoError(t, err)
	assert.Equal(t, Answer{Instance: srv.Name, Seen: client.InstanceIP.String()}, a)
}
