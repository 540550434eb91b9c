package netsetup_test

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/vishvananda/netlink"

	"github.com/edgebpf/edgebpf/internal/testenv"
	"github.com/edgebpf/edgebpf/netsetup"
)

func TestMain(m *testing.M) {
	if os.Getenv("EDGEBPF_TEST_CHILD") == "1" {
		childNode()
		return
	}
	testenv.Main(m)
}

func hostLinks(t *testing.T) []string {
	links, err := netlink.LinkList()
	require.NoError(t, err)
	var names []string
	for _, l := range links {
		names = append(names, l.Attrs().Name)
	}
	slices.Sort(names)
	return names
}

func TestNodeCarriesTrafficAndLeavesHostAlone(t *testing.T) {
	before := hostLinks(t)
	n := testenv.Node(t, "client", "server")
	assert.Equal(t, before, hostLinks(t), "the host namespace's links must not change")

	client, ok := n.Instance("client", 0)
	require.True(t, ok)
	server, ok := n.Instance("server", 0)
	require.True(t, ok)
	assert.True(t, netip.MustParsePrefix("10.18.0.0/24").Contains(server.NSIP))
	assert.True(t, netip.MustParsePrefix("10.30.0.0/16").Contains(server.InstanceIP))
	assert.NotEqual(t, client.NSIP, server.NSIP)
	assert.Equal(t, netip.MustParseAddr("10.18.0.1"), n.BridgeIP)

	// The bridge and both bridge-side veths live in the node namespace, MTU 1450.
	h, err := n.NS.Netlink()
	require.NoError(t, err)
	defer h.Close()
	for _, name := range []string{n.Bridge, client.Veth, server.Veth} {
		l, err := h.LinkByName(name)
		require.NoError(t, err, name)
		assert.Equal(t, 1450, l.Attrs().MTU, name)
		assert.True(t, strings.HasPrefix(name, netsetup.LinkPrefix), name)
	}

	// A TCP connection from the client's namespace to the server's namespace IP.
	var ln net.Listener
	require.NoError(t, server.NS.Do(func() (err error) {
		ln, err = net.Listen("tcp", ":7000")
		return err
	}))
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err == nil {
			_, _ = c.Write([]byte("hello"))
			c.Close()
		}
	}()
	var got []byte
	require.NoError(t, client.NS.Do(func() error {
		c, err := net.DialTimeout("tcp", netip.AddrPortFrom(server.NSIP, 7000).String(), 2*time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		got = make([]byte, 5)
		_, err = c.Read(got)
		return err
	}))
	assert.Equal(t, "hello", string(got))

	// The server port is not reachable from the host namespace: nothing listens there.
	_, err = net.DialTimeout("tcp", "127.0.0.1:7000", 200*time.Millisecond)
	assert.Error(t, err)
}

func TestRegistryEventsAndRollback(t *testing.T) {
	n := testenv.Node(t)
	var seen []string
	cancel := n.Registry.Subscribe(func(ev netsetup.Event) error {
		seen = append(seen, fmt.Sprintf("%s %s", ev.Kind, ev.Service.Name))
		return nil
	})
	defer cancel()

	svc, err := n.AddService("web")
	require.NoError(t, err)
	in, err := n.AddInstance("web")
	require.NoError(t, err)
	got, instances, ok := n.Registry.ByServiceIP(svc.IP)
	require.True(t, ok)
	assert.Equal(t, "web", got.Name)
	require.Len(t, instances, 1)
	byIP, ok := n.Registry.ByInstanceIP(in.InstanceIP)
	require.True(t, ok)
	assert.Equal(t, in, byIP)

	// A subscriber that refuses an instance rolls it back everywhere.
	refuse := n.Registry.Subscribe(func(ev netsetup.Event) error {
		if ev.Kind == netsetup.InstanceCreated {
			return fmt.Errorf("no room")
		}
		return nil
	})
	_, err = n.AddInstance("web")
	require.ErrorContains(t, err, "no room")
	refuse()
	assert.Len(t, n.Registry.Instances("web"), 1, "refused instance must not stay registered")
	_, err = os.Stat(filepath.Join("/run/netns", netsetup.Prefix+"x"))
	assert.True(t, os.IsNotExist(err))

	require.NoError(t, n.RemoveService("web"))
	_, _, ok = n.Registry.ByServiceIP(svc.IP)
	assert.False(t, ok)
	assert.Equal(t, []string{
		"service created web", "instance created web",
		"instance created web", "instance removed web", // the rolled-back one
		"instance removed web", "service removed web",
	}, seen)
	_, err = os.Stat(in.NS.Path())
	assert.True(t, os.IsNotExist(err), "removed instance's namespace must be gone")
}

func TestBadInput(t *testing.T) {
	n := testenv.Node(t)
	_, err := n.AddService("Bad Name")
	assert.ErrorContains(t, err, "lower-case")
	_, err = n.AddInstance("missing")
	assert.ErrorContains(t, err, "does not exist")
	_, err = n.AddService("dup")
	require.NoError(t, err)
	_, err = n.AddService("dup")
	assert.ErrorContains(t, err, "already exists")

	err = netsetup.NodeConfig{Subnet: netip.MustParsePrefix("10.30.1.0/24")}.Validate()
	assert.ErrorContains(t, err, "overlaps")
	err = netsetup.NodeConfig{MTU: 100}.Validate()
	assert.ErrorContains(t, err, "mtu")
	err = netsetup.NodeConfig{Subnet: netip.MustParsePrefix("10.18.0.0/30")}.Validate()
	assert.NoError(t, err)
}

func TestSubnetExhaustion(t *testing.T) {
	s := testenv.Session(t)
	n, err := netsetup.NewNode(s, netsetup.NodeConfig{Subnet: netip.MustParsePrefix("10.18.0.0/30")})
	require.NoError(t, err)
	_, err = n.AddService("a")
	require.NoError(t, err)
	_, err = n.AddInstance("a") // .2 is the only address left after the bridge's .1
	require.NoError(t, err)
	_, err = n.AddInstance("a")
	assert.ErrorContains(t, err, "exhausted")
}

func TestStartedProcessEndsWithSession(t *testing.T) {
	s := testenv.Session(t)
	n, err := netsetup.NewNode(s, netsetup.NodeConfig{})
	require.NoError(t, err)
	cmd := exec.Command("sleep", "60")
	require.NoError(t, s.Start(n.NS, cmd))
	pid := cmd.Process.Pid
	require.NoError(t, s.Close())
	assert.Eventually(t, func() bool { return syscall.Kill(pid, 0) != nil }, 3*time.Second, 20*time.Millisecond)
	_, err = os.Stat(n.NS.Path())
	assert.True(t, os.IsNotExist(err))
}

// TestScale200 brings a node with 200 instances up and down.
func TestScale200(t *testing.T) {
	if testing.Short() {
		t.Skip("200 namespaces take a few seconds")
	}
	n := testenv.Node(t)
	_, err := n.AddService("many")
	require.NoError(t, err)
	start := time.Now()
	for range 200 {
		_, err := n.AddInstance("many")
		require.NoError(t, err)
	}
	t.Logf("200 instances up in %v", time.Since(start))
	ins := n.Registry.Instances("many")
	require.Len(t, ins, 200)
	last := ins[199]
	// The last instance reaches the bridge.
	require.NoError(t, last.NS.Do(func() error {
		c, err := net.DialTimeout("udp", netip.AddrPortFrom(n.BridgeIP, 9).String(), time.Second)
		if err != nil {
			return err
		}
		return c.Close()
	}))
	start = time.Now()
	require.NoError(t, n.Close())
	t.Logf("200 instances down in %v", time.Since(start))
	for _, in := range ins {
		_, err := os.Stat(in.NS.Path())
		require.True(t, os.IsNotExist(err), in.NS.Name)
	}
}

// childNode is run in a re-executed test binary: it builds a node with a process inside and
// waits to be killed.
func childNode() {
	if dir := os.Getenv("EDGEBPF_TEST_STATEDIR"); dir != "" {
		netsetup.StateDir = dir
	}
	s, err := netsetup.NewSession("test child")
	if err != nil {
		fmt.Println("error", err)
		os.Exit(1)
	}
	n, err := netsetup.NewNode(s, netsetup.NodeConfig{})
	if err == nil {
		_, err = n.AddService("svc")
	}
	if err == nil {
		_, err = n.AddInstance("svc")
	}
	if err == nil {
		in, _ := n.Instance("svc", 0)
		// The shell dies with this process (Pdeathsig); the sleep it leaves behind in the
		// instance namespace is what cleanup must find.
		err = s.Start(in.NS, exec.Command("sh", "-c", "sleep 300 & echo $! > "+os.Getenv("EDGEBPF_TEST_PIDFILE")+"; wait"))
	}
	// Wait until the shell has left its sleep behind before saying ready.
	for i := 0; err == nil && i < 500; i++ {
		if b, _ := os.ReadFile(os.Getenv("EDGEBPF_TEST_PIDFILE")); len(b) > 0 {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err != nil {
		fmt.Println("error", err)
		os.Exit(1)
	}
	fmt.Println("ready", s.ID())
	time.Sleep(5 * time.Minute)
}

func TestBridgeMACIsStable(t *testing.T) {
	n := testenv.Node(t, "a")
	h, err := n.NS.Netlink()
	require.NoError(t, err)
	defer h.Close()
	br, err := h.LinkByName(n.Bridge)
	require.NoError(t, err)
	before := br.Attrs().HardwareAddr.String()
	assert.True(t, strings.HasPrefix(before, "02:eb:"), before)
	for range 3 {
		_, err := n.AddInstance("a")
		require.NoError(t, err)
	}
	br, err = h.LinkByName(n.Bridge)
	require.NoError(t, err)
	assert.Equal(t, before, br.Attrs().HardwareAddr.String(), "instances joining do not change the gateway's MAC")
}
