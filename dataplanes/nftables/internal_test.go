package nftables

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv4"

	"github.com/edgebpf/edgebpf/internal/testenv"
	"github.com/edgebpf/edgebpf/netsetup"
)

func TestBadInputIsAClearError(t *testing.T) {
	node := testenv.Node(t)
	dp := New()
	require.NoError(t, dp.Deploy(context.Background(), node))
	t.Cleanup(func() { assert.NoError(t, dp.Close()) })

	err := dp.handle(netsetup.Event{Kind: netsetup.ServiceCreated,
		Service: netsetup.Service{Name: "hashed", IP: netip.MustParseAddr("10.30.9.9"), Balancing: "consistent-hash"}})
	assert.EqualError(t, err, `service hashed: balancing "consistent-hash" is not supported by the nftables data plane: use "round-robin"`)

	err = dp.handle(netsetup.Event{Kind: netsetup.ServiceCreated,
		Service: netsetup.Service{Name: "outside", IP: netip.MustParseAddr("10.31.0.1"), Balancing: netsetup.RoundRobin}})
	assert.EqualError(t, err, "service outside: service IP 10.31.0.1 is outside the service range 10.30.0.0/16")
	assert.Empty(t, dp.rules.serviceIPs(), "nothing installed for refused services")
}

func TestTupleKeyLayout(t *testing.T) {
	k := tuple{Src: netip.MustParseAddr("10.18.0.2"), Sport: 0x1234, Dst: netip.MustParseAddr("10.30.0.3"), Dport: 7400, Proto: 17}.key()
	assert.Equal(t, []byte{10, 18, 0, 2, 0x12, 0x34, 0, 0, 10, 30, 0, 3, 0x1c, 0xe8, 0, 0, 17, 0, 0, 0}, k)
}

// TestRemovedInstanceSessionsEnd checks what the shared suite leaves open: a session to a
// removed instance is refused (UDP: port unreachable, TCP: reset), not balanced to another
// instance, while new sessions with fresh tuples go to the remaining one.
func TestRemovedInstanceSessionsEnd(t *testing.T) {
	node := testenv.Node(t, "client")
	dp := New()
	require.NoError(t, dp.Deploy(context.Background(), node))
	t.Cleanup(func() { assert.NoError(t, dp.Close()) })
	svc, err := node.AddService("server")
	require.NoError(t, err)
	for range 2 {
		serve(t, node, "server")
	}
	client, _ := node.Instance("client", 0)
	target := netip.AddrPortFrom(svc.IP, echoPort).String()

	// One UDP session, then TCP sessions until one shares the UDP session's instance and one
	// is on the other. Round-robin makes that the next two, but a CI run on a loaded machine
	// once saw a session take an extra turn (its SYN apparently counted twice; the cause was
	// not found), so a few more are allowed and strict order is only logged. Strict
	// round-robin is the shared suite's and the benchmarks' business.
	var udp net.Conn
	var on [2][]net.Conn // TCP sessions by instance
	t.Cleanup(func() {
		if udp != nil {
			udp.Close()
		}
		for _, cs := range on {
			for _, c := range cs {
				c.Close()
			}
		}
	})
	var first int
	require.NoError(t, client.NS.Do(func() (err error) {
		if udp, err = net.Dial("udp4", target); err != nil {
			return err
		}
		if first, err = roundTrip(udp); err != nil {
			return err
		}
		var order []int
		for len(on[0]) == 0 || len(on[1]) == 0 {
			if len(order) == 6 {
				return fmt.Errorf("six TCP sessions never reached both instances: %v", order)
			}
			c, err := net.DialTimeout("tcp4", target, 2*time.Second)
			if err != nil {
				return err
			}
			at, err := roundTrip(c)
			if err != nil {
				c.Close()
				return err
			}
			on[at] = append(on[at], c)
			order = append(order, at)
		}
		if order[0] != 1-first {
			t.Logf("sessions after the UDP one (on %d) were not strictly alternating: %v", first, order)
			logConntrackStats(t, node)
		}
		return nil
	}))
	at := []int{first}
	udpIdx, otherIdx := first, 1-first
	tcp2, tcp1 := on[udpIdx][0], on[otherIdx][0]
	for _, c := range []net.Conn{udp, tcp1, tcp2} {
		i, err := roundTrip(c)
		require.NoError(t, err)
		at = append(at, i)
	}
	require.Equal(t, []int{first, udpIdx, otherIdx, udpIdx}, at, "sessions stay on their instance")

	gone, _ := node.Instance("server", at[0])
	require.NoError(t, node.RemoveInstance(gone))

	_, err = roundTrip(udp)
	assert.ErrorIs(t, err, syscall.ECONNREFUSED, "the UDP session is refused, not answered by the other instance")
	_, err = roundTrip(tcp2)
	assert.ErrorIs(t, err, syscall.ECONNRESET, "the TCP session is reset")
	still, err := roundTrip(tcp1)
	require.NoError(t, err, "a session on the remaining instance goes on")
	assert.Equal(t, 1-at[0], still)

	require.NoError(t, client.NS.Do(func() error {
		c, err := net.Dial("udp4", target)
		if err != nil {
			return err
		}
		defer c.Close()
		next, err := roundTrip(c)
		assert.Equal(t, 1-at[0], next, "a new session goes to the remaining instance")
		return err
	}))
}

// logConntrackStats logs the node namespace's conntrack counters (insert_failed, drop, ...),
// the first thing to read when a session took an unexpected turn.
func logConntrackStats(t *testing.T, node *netsetup.Node) {
	_ = node.NS.Do(func() error {
		b, err := os.ReadFile("/proc/thread-self/net/stat/nf_conntrack")
		t.Logf("conntrack statistics of the node namespace (per CPU, hex): %s %v", b, err)
		return nil
	})
}

const echoPort = 7401

// serve adds an instance that answers every UDP datagram and every line on a TCP connection
// with its index.
func serve(t *testing.T, node *netsetup.Node, service string) {
	t.Helper()
	in, err := node.AddInstance(service)
	require.NoError(t, err)
	var ln net.Listener
	var pc net.PacketConn
	require.NoError(t, in.NS.Do(func() (err error) {
		if ln, err = net.Listen("tcp4", fmt.Sprintf(":%d", echoPort)); err != nil {
			return err
		}
		pc, err = net.ListenPacket("udp4", fmt.Sprintf(":%d", echoPort))
		return err
	}))
	var mu sync.Mutex
	var accepted []net.Conn
	t.Cleanup(func() {
		ln.Close()
		pc.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range accepted {
			c.Close() // a removed instance's connections never hear from their client again
		}
	})
	me := []byte{byte(in.Index)}
	go func() {
		buf := make([]byte, 64)
		for {
			_, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			_, _ = pc.WriteTo(me, from)
		}
	}()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			accepted = append(accepted, c)
			mu.Unlock()
			go func() {
				defer c.Close()
				buf := make([]byte, 64)
				for {
					if _, err := c.Read(buf); err != nil {
						return
					}
					if _, err := c.Write(me); err != nil {
						return
					}
				}
			}()
		}
	}()
}

// roundTrip sends one byte and returns the index of the instance that answered.
func roundTrip(c net.Conn) (int, error) {
	if _, err := c.Write([]byte("?")); err != nil {
		return 0, err
	}
	_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
	b := make([]byte, 1)
	if _, err := c.Read(b); err != nil {
		return 0, err
	}
	return int(b[0]), nil
}

// TestICMPEchoToServiceIP checks the documented choice for ICMP: an echo to a service IP is
// balanced like a session and answered, from the service IP, by the chosen instance.
func TestICMPEchoToServiceIP(t *testing.T) {
	node := testenv.Node(t, "client", "server")
	dp := New()
	require.NoError(t, dp.Deploy(context.Background(), node))
	t.Cleanup(func() { assert.NoError(t, dp.Close()) })
	svc, _ := node.Registry.Service("server")
	client, _ := node.Instance("client", 0)
	var c *icmp.PacketConn
	require.NoError(t, client.NS.Do(func() (err error) {
		c, err = icmp.ListenPacket("ip4:icmp", "0.0.0.0")
		return err
	}))
	defer c.Close()
	req, err := (&icmp.Message{Type: ipv4.ICMPTypeEcho, Body: &icmp.Echo{ID: 77, Seq: 1, Data: []byte("edgebpf")}}).Marshal(nil)
	require.NoError(t, err)
	_, err = c.WriteTo(req, &net.IPAddr{IP: svc.IP.AsSlice()})
	require.NoError(t, err)
	_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
	buf := make([]byte, 1500)
	for {
		n, from, err := c.ReadFrom(buf)
		require.NoError(t, err, "the echo is answered")
		m, err := icmp.ParseMessage(1, buf[:n])
		require.NoError(t, err)
		if m.Type != ipv4.ICMPTypeEchoReply {
			continue
		}
		assert.Equal(t, svc.IP.String(), from.String(), "the reply comes from the service IP")
		return
	}
}
