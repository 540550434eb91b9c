package userspace_test

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/edgebpf/edgebpf/dataplanes/userspace"
	"github.com/edgebpf/edgebpf/internal/inetcsum"
	"github.com/edgebpf/edgebpf/internal/testenv"
	"github.com/edgebpf/edgebpf/netsetup"
)

// The SYN flood test is bounded by default (3 rounds of 1 s against a 32,768-session
// table, which the flood fills in a fraction of a second); issue 15's reproduction is
//
//	go test -run TestSYNFloodOnNode ./dataplanes/userspace -args -synflood.rounds=20 -synflood.sessions=0
var (
	floodRounds   = flag.Int("synflood.rounds", 3, "rounds of SYN flood in TestSYNFloodOnNode")
	floodDuration = flag.Duration("synflood.flood", time.Second, "length of each flood round")
	floodSessions = flag.Int("synflood.sessions", 1<<15, "session table of the proxy in TestSYNFloodOnNode (0: DefaultConfig's)")
)

const echoPort = 7400

// TestSYNFloodOnNode is finding 6 of issue 15 on a real node: one instance floods the service IP
// with SYNs that the server never answers (its replies to the flooder are blackholed in the
// server's namespace), in rounds; during and after each round another instance's TCP
// connects through the proxy must not be refused, must all succeed after the flood, and an
// idle connection opened before the first round must still work after the last. It
// reports the proxy's counters and its process's RSS.
func TestSYNFloodOnNode(t *testing.T) {
	node := testenv.Node(t)
	cfg := userspace.DefaultConfig
	if *floodSessions > 0 {
		cfg.MaxSessions, cfg.MaxSessionsPerClient = *floodSessions, *floodSessions/4
	}
	dp := userspace.NewWithConfig(cfg)
	require.NoError(t, dp.Deploy(context.Background(), node))
	t.Cleanup(func() { assert.NoError(t, dp.Close()) })
	rssDeployed := rssKiB(t, dp.PID())

	svc, err := node.AddService("server")
	require.NoError(t, err)
	server, err := node.AddInstance("server")
	require.NoError(t, err)
	serveEcho(t, server)
	var client, flooder *netsetup.Instance
	for _, p := range []**netsetup.Instance{&client, &flooder} {
		name := map[**netsetup.Instance]string{&client: "client", &flooder: "flooder"}[p]
		_, err := node.AddService(name)
		require.NoError(t, err)
		*p, err = node.AddInstance(name)
		require.NoError(t, err)
	}
	blackhole(t, server, flooder.InstanceIP)

	idle := dialEcho(t, client, svc.IP)
	t.Cleanup(func() { idle.Close() })
	require.NoError(t, echo(idle, "before"))

	raw := rawSocket(t, flooder)
	var during, after tally
	var sent int
	var rssRounds []int
	for round := range *floodRounds {
		stop := make(chan struct{})
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				during.add(connectOnce(client, svc.IP))
			}
		}()
		n, err := synFlood(raw, flooder.NSIP, svc.IP, *floodDuration)
		sent += n
		close(stop)
		wg.Wait()
		require.NoError(t, err, "flood round %d", round)
		for range 5 {
			after.add(connectOnce(client, svc.IP))
		}
		rssRounds = append(rssRounds, rssKiB(t, dp.PID()))
	}
	require.NoError(t, echo(idle, "after"), "the idle connection opened before the flood still works")

	st := dp.Stats()
	t.Logf("%d rounds of %v, %d SYNs sent; table %d sessions, %d per client", *floodRounds, *floodDuration, sent,
		cfg.MaxSessions, cfg.MaxSessionsPerClient)
	t.Logf("connects during the floods: %v; after each round: %v", &during, &after)
	t.Logf("proxy: sessions %d, created %d, evicted %d, evicted at a client's share %d, expired %d, refused %d",
		st["sessions"], st["sessions_created"], st["sessions_evicted"], st["sessions_evicted_share"], st["sessions_expired"], st["refused"])
	t.Logf("RSS of the proxy process: %d KiB deployed, after each round (KiB): %v", rssDeployed, rssRounds)

	assert.Zero(t, during.refused, "no connect refused during the floods")
	assert.Zero(t, after.refused+after.failed, "every connect after a flood succeeds")
	assert.LessOrEqual(t, st["sessions"], uint64(cfg.MaxSessions))
	assert.Zero(t, st["refused"], "the proxy refused nothing")
}

// tally counts connect outcomes.
type tally struct{ ok, refused, failed int }

func (t *tally) add(err error) {
	switch {
	case err == nil:
		t.ok++
	case errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET):
		t.refused++
	default:
		t.failed++ // e.g. a SYN and its retransmissions lost in the TUN device's full queue
	}
}

func (t *tally) String() string {
	return fmt.Sprintf("%d ok, %d refused, %d failed otherwise", t.ok, t.refused, t.failed)
}

// serveEcho runs a line echo server on echoPort in the instance's namespace; the test's
// cleanup closes it and every connection it accepted.
func serveEcho(t *testing.T, in *netsetup.Instance) {
	var ln net.Listener
	require.NoError(t, in.NS.Do(func() (err error) {
		ln, err = net.Listen("tcp4", fmt.Sprintf(":%d", echoPort))
		return err
	}))
	var wg sync.WaitGroup
	var mu sync.Mutex
	conns := map[net.Conn]bool{}
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns[c] = true
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer func() {
					mu.Lock()
					delete(conns, c)
					mu.Unlock()
					c.Close()
				}()
				r := bufio.NewReader(c)
				for {
					line, err := r.ReadString('\n')
					if err != nil {
						return
					}
					if _, err := c.Write([]byte(line)); err != nil {
						return
					}
				}
			}()
		}
	}()
}

// blackhole drops, in the instance's namespace, everything it sends to addr.
func blackhole(t *testing.T, in *netsetup.Instance, addr netip.Addr) {
	h, err := in.NS.Netlink()
	require.NoError(t, err)
	defer h.Close()
	require.NoError(t, h.RouteAdd(&netlink.Route{
		Dst:  &net.IPNet{IP: addr.AsSlice(), Mask: net.CIDRMask(32, 32)},
		Type: unix.RTN_BLACKHOLE,
	}))
}

func dialEcho(t *testing.T, in *netsetup.Instance, target netip.Addr) net.Conn {
	var c net.Conn
	require.NoError(t, in.NS.Do(func() (err error) {
		c, err = net.DialTimeout("tcp4", netip.AddrPortFrom(target, echoPort).String(), 5*time.Second)
		return err
	}))
	return c
}

// echo sends a line on c and waits for it to come back.
func echo(c net.Conn, msg string) error {
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := fmt.Fprintln(c, msg); err != nil {
		return err
	}
	got, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if got != msg+"\n" {
		return fmt.Errorf("echo %q came back as %q", msg, got)
	}
	return nil
}

// connectOnce opens a TCP connection from in to target through the proxy, echoes a line
// and closes it. The timeout leaves room for two SYN retransmissions (1 s, 3 s).
func connectOnce(in *netsetup.Instance, target netip.Addr) error {
	return in.NS.Do(func() error {
		c, err := net.DialTimeout("tcp4", netip.AddrPortFrom(target, echoPort).String(), 5*time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		return echo(c, "hello")
	})
}

// rawSocket opens a raw IPv4 socket (headers included) in the instance's namespace.
func rawSocket(t *testing.T, in *netsetup.Instance) int {
	fd := -1
	require.NoError(t, in.NS.Do(func() (err error) {
		fd, err = unix.Socket(unix.AF_INET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_RAW)
		return err
	}))
	t.Cleanup(func() { unix.Close(fd) })
	return fd
}

// synFlood sends SYNs from src to dst on fd for d, each from a random port to a random port
// (so nearly every one opens a session), and returns how many it sent.
func synFlood(fd int, src, dst netip.Addr, d time.Duration) (int, error) {
	pkt := make([]byte, 40)
	pkt[0], pkt[8], pkt[9] = 0x45, 64, unix.IPPROTO_TCP
	binary.BigEndian.PutUint16(pkt[2:], 40)
	s4, d4 := src.As4(), dst.As4()
	copy(pkt[12:], s4[:])
	copy(pkt[16:], d4[:])
	tcp := pkt[20:]
	tcp[12], tcp[13] = 5<<4, 0x02 // SYN
	binary.BigEndian.PutUint16(tcp[14:], 64240)
	pseudo := inetcsum.Add(inetcsum.Add(0, s4[:]), d4[:]) + unix.IPPROTO_TCP + 20
	to := &unix.SockaddrInet4{Addr: d4}
	n := 0
	for end := time.Now().Add(d); ; {
		if n%256 == 0 && time.Now().After(end) {
			return n, nil
		}
		binary.BigEndian.PutUint32(tcp[0:], rand.Uint32()) // both ports
		binary.BigEndian.PutUint32(tcp[4:], rand.Uint32())
		tcp[16], tcp[17] = 0, 0
		binary.BigEndian.PutUint16(tcp[16:], inetcsum.Fold(inetcsum.Add(pseudo, tcp)))
		if err := unix.Sendto(fd, pkt, 0, to); err != nil && err != unix.ENOBUFS {
			return n, fmt.Errorf("send syn: %w", err)
		}
		n++
	}
}

// rssKiB is the resident set of process pid (the proxy's).
func rssKiB(t *testing.T, pid int) int {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	require.NoError(t, err)
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kib, err := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
			require.NoError(t, err)
			return kib
		}
	}
	t.Fatalf("no VmRSS in /proc/%d/status", pid)
	return 0
}
