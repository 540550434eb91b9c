package userspace_test

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
	"github.com/vishvananda/netlink"

	"github.com/edgebpf/edgebpf/dataplanes/userspace"
	"github.com/edgebpf/edgebpf/internal/testenv"
	"github.com/edgebpf/edgebpf/netsetup"
)

// userspaceCluster is a 2-worker cluster with the userspace data plane on both workers.
type userspaceCluster struct {
	*netsetup.Cluster
	planes []*userspace.DataPlane
}

func newUserspaceCluster(t testing.TB) *userspaceCluster {
	t.Helper()
	sess := testenv.Session(t)
	c, err := netsetup.NewCluster(sess, netsetup.ClusterConfig{Name: "ust"})
	require.NoError(t, err)
	t.Cleanup(func() { assert.NoError(t, c.Close()) })
	uc := &userspaceCluster{Cluster: c}
	for _, w := range c.Workers {
		dp := userspace.New()
		require.NoError(t, dp.Deploy(context.Background(), w))
		t.Cleanup(func() { assert.NoError(t, dp.Close()) })
		uc.planes = append(uc.planes, dp)
	}
	return uc
}

// serve starts TCP and UDP servers on echoPort in the instance that answer every request
// with the instance's name and the address the request came from.
func serve(t testing.TB, in *netsetup.Instance) {
	t.Helper()
	var ln net.Listener
	var pc net.PacketConn
	require.NoError(t, in.NS.Do(func() (err error) {
		if ln, err = net.Listen("tcp4", fmt.Sprintf(":%d", echoPort)); err != nil {
			return err
		}
		pc, err = net.ListenPacket("udp4", fmt.Sprintf(":%d", echoPort))
		return err
	}))
	t.Cleanup(func() { ln.Close(); pc.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				buf := make([]byte, 64)
				if _, err := c.Read(buf); err == nil {
					_, _ = fmt.Fprintf(c, "%s %s", in.Name, c.RemoteAddr())
				}
			}()
		}
	}()
	go func() {
		buf := make([]byte, 2048)
		for {
			_, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			_, _ = pc.WriteTo(fmt.Appendf(nil, "%s %s", in.Name, from), from)
		}
	}()
}

// ask sends one request over a connected socket of network from the instance to target and
// returns the answer and the address the client saw it come from. A connected UDP socket
// drops datagrams from any other address, so an answer proves the reply's source.
func ask(in *netsetup.Instance, network string, target netip.Addr) (answer, from string, err error) {
	err = in.NS.Do(func() error {
		c, err := net.DialTimeout(network, netip.AddrPortFrom(target, echoPort).String(), 3*time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(3 * time.Second))
		if _, err := c.Write([]byte("?")); err != nil {
			return err
		}
		buf := make([]byte, 256)
		n, err := c.Read(buf)
		if err != nil {
			return err
		}
		answer, from = string(buf[:n]), c.RemoteAddr().String()
		return nil
	})
	return answer, from, err
}

// TestTunnelCluster carries TCP and UDP through service IPs and instance IPs between two
// workers running the userspace data plane, both ways: each client sees only the address it
// addressed, each server the client's instance IP; then it checks the proxies' counters and
// that same-worker traffic stays off the tunnel.
func TestTunnelCluster(t *testing.T) {
	c := newUserspaceCluster(t)
	var svcs []netsetup.Service
	var ins []*netsetup.Instance
	for w, name := range []string{"alpha", "beta"} {
		svc, err := c.AddService(name)
		require.NoError(t, err)
		in, err := c.AddInstance(name, w)
		require.NoError(t, err)
		serve(t, in)
		svcs, ins = append(svcs, svc), append(ins, in)
	}
	for from := range 2 {
		to := 1 - from
		for _, network := range []string{"tcp4", "udp4"} {
			for _, target := range []netip.Addr{svcs[to].IP, ins[to].InstanceIP} {
				answer, seen, err := ask(ins[from], network, target)
				require.NoError(t, err, "%s from %s on worker %d to %s on worker %d", network, ins[from].Name, from, target, to)
				assert.Equal(t, netip.AddrPortFrom(target, echoPort).String(), seen, "the client sees only the address it addressed")
				name, addr, _ := strings.Cut(answer, " ")
				assert.Equal(t, ins[to].Name, name)
				host, _, err := net.SplitHostPort(addr)
				require.NoError(t, err)
				assert.Equal(t, ins[from].InstanceIP.String(), host, "the server sees the client's instance IP")
			}
		}
	}
	for w, dp := range c.planes {
		st := dp.Stats()
		assert.NotZero(t, st["tunnel_sent"], "worker %d sent through the tunnel", w)
		assert.NotZero(t, st["tunnel_reversed"], "worker %d reverse-translated replies", w)
		for k, v := range st {
			if strings.HasPrefix(k, "tunnel_dropped") || k == "tunnel_send_errors" || k == "write_errors" {
				assert.Zero(t, v, "worker %d: %s", w, k)
			}
		}
	}

	// Same worker: a second instance of beta on worker 0 answers alpha without the tunnel.
	near, err := c.AddInstance("beta", 0)
	require.NoError(t, err)
	serve(t, near)
	sent := c.planes[0].Stats()["tunnel_sent"]
	answer, _, err := ask(ins[0], "udp4", near.InstanceIP)
	require.NoError(t, err)
	assert.True(t, strings.HasPrefix(answer, near.Name+" "+ins[0].InstanceIP.String()+":"), answer)
	assert.Equal(t, sent, c.planes[0].Stats()["tunnel_sent"], "same-worker traffic does not use the tunnel")
}

// TestTunnelClusterBadInput sends datagrams to worker 1's tunnel port over the underlay,
// from a stranger and from worker 0, that the proxy must drop: each is counted under its
// cause, nothing reaches the server, and the proxy keeps carrying traffic.
func TestTunnelClusterBadInput(t *testing.T) {
	c := newUserspaceCluster(t)
	_, err := c.AddService("client")
	require.NoError(t, err)
	client, err := c.AddInstance("client", 0)
	require.NoError(t, err)
	svc, err := c.AddService("server")
	require.NoError(t, err)
	server, err := c.AddInstance("server", 1)
	require.NoError(t, err)
	serve(t, server)

	w1, ok := c.Workers[1].Underlay()
	require.True(t, ok)
	to := netip.AddrPortFrom(w1.IP, netsetup.TunnelPort)
	// A stranger on the underlay: an address of the underlay's prefix no worker has.
	stranger := w1.Prefix.Addr().Next()
	for range 250 {
		stranger = stranger.Next()
	}
	h, err := c.Underlay.Netlink()
	require.NoError(t, err)
	defer h.Close()
	br, err := h.LinkByName(netsetup.UnderlayBridge)
	require.NoError(t, err)
	require.NoError(t, h.AddrAdd(br, &netlink.Addr{IPNet: &net.IPNet{IP: stranger.AsSlice(), Mask: net.CIDRMask(w1.Prefix.Bits(), 32)}}))

	// A well-formed packet for the server, as worker 0 would send it.
	good := udpPacket(client.InstanceIP, server.NSIP, 5000, echoPort, []byte("?"))
	sendTo(t, c.Underlay, stranger, to, good)
	ipv6 := append([]byte{0x60}, make([]byte, 47)...)
	for _, bad := range [][]byte{good[:len(good)-1], ipv6, make([]byte, 1451), udpPacket(client.InstanceIP, client.NSIP, 1, 2, nil)} {
		sendTo(t, c.Workers[0].NS, netip.Addr{}, to, bad)
	}
	want := map[string]uint64{
		"tunnel_dropped_unknown_peer": 1, "tunnel_dropped_truncated": 1, "tunnel_dropped_not_ipv4": 1,
		"tunnel_dropped_oversized": 1, "tunnel_dropped_unknown_dst": 1,
	}
	// The datagrams cross two veths and a bridge, and the counters are asked of another
	// process: wait until they are all counted.
	require.Eventually(t, func() bool {
		st := c.planes[1].Stats()
		for k, v := range want {
			if st[k] != v {
				return false
			}
		}
		return true
	}, 5*time.Second, 20*time.Millisecond, "counters %v", c.planes[1].Stats())
	assert.Zero(t, c.planes[1].Stats()["tunnel_received"], "nothing was written into the device")

	answer, _, err := ask(client, "udp4", svc.IP)
	require.NoError(t, err, "the proxy still carries traffic")
	assert.True(t, strings.HasPrefix(answer, server.Name+" "), answer)
}

// udpPacket builds an IPv4/UDP packet without options and with no UDP checksum.
func udpPacket(src, dst netip.Addr, sport, dport uint16, payload []byte) []byte {
	n := 28 + len(payload)
	p := make([]byte, n)
	p[0], p[8], p[9] = 0x45, 64, 17
	p[2], p[3] = byte(n>>8), byte(n)
	copy(p[12:16], src.AsSlice())
	copy(p[16:20], dst.AsSlice())
	var sum uint32
	for i := 0; i < 20; i += 2 {
		sum += uint32(p[i])<<8 | uint32(p[i+1])
	}
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	p[10], p[11] = byte(^sum>>8), byte(^sum)
	p[20], p[21], p[22], p[23] = byte(sport>>8), byte(sport), byte(dport>>8), byte(dport)
	p[24], p[25] = byte((n-20)>>8), byte(n-20)
	copy(p[28:], payload)
	return p
}

// sendTo sends payload as one datagram from ns (from the address from, if valid) to to.
func sendTo(t *testing.T, ns *netsetup.Namespace, from netip.Addr, to netip.AddrPort, payload []byte) {
	t.Helper()
	require.NoError(t, ns.Do(func() error {
		var laddr *net.UDPAddr
		if from.IsValid() {
			laddr = net.UDPAddrFromAddrPort(netip.AddrPortFrom(from, 0))
		}
		c, err := net.DialUDP("udp4", laddr, net.UDPAddrFromAddrPort(to))
		if err != nil {
			return err
		}
		defer c.Close()
		_, err = c.Write(payload)
		return err
	}))
}
