package cloudlab

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/edgebpf/edgebpf/internal/testenv"
	"github.com/edgebpf/edgebpf/netsetup"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// standIn is two stand-in hosts for the cross-host path: network namespaces the test owns
// (edgebpf-<session>-host-a and -host-b), joined by a veth "lan0" carrying the profile's
// experiment LAN, 10.10.1.1/24 and .2/24, each with a home directory and an ssh stand-in.
//
// What differs from real ssh to real hosts: the stand-in enters only the host's network
// namespace (nsenter --net), so both "hosts" share this machine's file system, mount
// namespace and PID namespace: /run/edgebpf and /run/netns are shared (`edgebpf status` on
// either lists both nodes, which is why run-cross.sh always names the node with --node), the
// binary is copied to per-host home directories on one disk, and a stray kill could reach the
// other "host". There is no authentication, no network latency on the control path, and the
// test runs as root, so a `sudo` shim that runs its arguments stands in for sudo. The LAN is a
// veth pair rather than a NIC behind a switch: macvlan makes a veth parent promiscuous (veth
// has no unicast filter), where a NIC adds the child's MAC to its filter.
type standIn struct {
	hosts [2]*netsetup.Namespace
	homes [2]string
	ssh   string
	env   []string
}

var hostNames = [2]string{"host-a", "host-b"}

func newStandIn(t *testing.T) *standIn {
	t.Helper()
	sess := testenv.Session(t)
	s := &standIn{}
	for i, name := range hostNames {
		ns, err := sess.NewNamespace(name)
		require.NoError(t, err)
		require.NoError(t, ns.Sysctl("ipv6/conf/default/disable_ipv6", "1"), "no IPv6 addresses appearing while the test compares states")
		s.hosts[i] = ns
	}
	ha, err := s.hosts[0].Netlink()
	require.NoError(t, err)
	defer ha.Close()
	hb, err := s.hosts[1].Netlink()
	require.NoError(t, err)
	defer hb.Close()
	require.NoError(t, ha.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "lan0", MTU: 1500},
		PeerName: "lan0", PeerMTU: 1500, PeerNamespace: netlink.NsFd(s.hosts[1].Handle())}))
	for i, h := range []*netlink.Handle{ha, hb} {
		l, err := h.LinkByName("lan0")
		require.NoError(t, err)
		require.NoError(t, h.AddrAdd(l, &netlink.Addr{IPNet: &net.IPNet{IP: net.IPv4(10, 10, 1, byte(i+1)), Mask: net.CIDRMask(24, 32)}}))
		require.NoError(t, h.LinkSetUp(l))
	}
	for _, h := range []*netlink.Handle{ha, hb} {
		require.Eventually(t, func() bool {
			l, err := h.LinkByName("lan0")
			return err == nil && l.Attrs().RawFlags&unix.IFF_RUNNING != 0
		}, 10*time.Second, 10*time.Millisecond, "the LAN's carrier comes up")
	}

	dir := t.TempDir()
	bin := filepath.Join(dir, "bin")
	require.NoError(t, os.MkdirAll(bin, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(bin, "sudo"), []byte("#!/bin/sh\n[ \"$1\" = -n ] && shift\nexec \"$@\"\n"), 0o755))
	var cases strings.Builder
	for i, name := range hostNames {
		s.homes[i] = filepath.Join(dir, name)
		require.NoError(t, os.MkdirAll(s.homes[i], 0o755))
		fmt.Fprintf(&cases, "%s) ns=%s home=%s ;;\n", name, s.hosts[i].Path(), s.homes[i])
	}
	// ssh [OPTIONS] HOST COMMAND: COMMAND runs with bash in HOST's network namespace and home
	// directory, stdin and stdout passed through, its exit code returned.
	s.ssh = filepath.Join(dir, "ssh")
	script := "#!/bin/bash\nset -euo pipefail\n" +
		"while [[ $1 == -* ]]; do case $1 in -o | -i | -p | -l) shift 2 ;; *) shift ;; esac; done\n" +
		"case $1 in\n" + cases.String() + "*) echo \"ssh: $1: unknown host\" >&2; exit 255 ;;\nesac\n" +
		"cd \"$home\"\nexec nsenter --net=\"$ns\" env PATH=\"" + bin + ":$PATH\" HOME=\"$home\" bash -c \"$2\"\n"
	require.NoError(t, os.WriteFile(s.ssh, []byte(script), 0o755))
	s.env = append(os.Environ(), "SSH="+s.ssh, "BOOTSTRAP=0")
	return s
}

// run runs COMMAND on stand-in host i through the ssh stand-in.
func (s *standIn) run(ctx context.Context, i int, command string) (string, error) {
	out, err := exec.CommandContext(ctx, s.ssh, hostNames[i], command).CombinedOutput()
	return string(out), err
}

// buildEdgebpf builds the binary the "hosts" run, as make dist does.
func buildEdgebpf(t *testing.T) string {
	t.Helper()
	goTool := requireTool(t, "go", "the test builds edgebpf")
	bin := filepath.Join(t.TempDir(), "edgebpf")
	cmd := exec.Command(goTool, "build", "-o", bin, "../cmd/edgebpf")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "go build: %s", out)
	return bin
}

// TestCrossHostSuite drives run-cross.sh against two stand-in hosts, each running its own
// `edgebpf node` per data plane over the veth LAN, the data planes interleaved: TCP (iperf3)
// and UDP (sockperf ping-pong, iperf3 -u) cross between client-0 on host A and server-0 on
// host B (direct: routed over the underlay by the data plane; userspace, ebpf and nftables: through
// the service IP and their tunnels); the hosts' links, addresses and routes are as before,
// and nothing the nodes created is left.
func TestCrossHostSuite(t *testing.T) {
	testenv.RequirePrivileged(t)
	for _, tool := range []string{"iperf3", "sockperf", "nsenter", "setsid"} {
		requireTool(t, tool, "run-cross.sh runs it on the hosts")
	}
	bin := buildEdgebpf(t)
	s := newStandIn(t)
	before := [2][]string{testenv.NetState(t, s.hosts[0]), testenv.NetState(t, s.hosts[1])}
	dataplanes := []string{"direct", "userspace", "ebpf", "nftables"}
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	out := t.TempDir()
	cmd := exec.CommandContext(ctx, "bash", "run-cross.sh", hostNames[0], hostNames[1], out)
	cmd.Env = append(s.env, "EDGEBPF_BIN="+bin, "DATAPLANES="+strings.Join(dataplanes, " "),
		"DURATION=1", "REPS=1", "PEER_WAIT=30", "PATH_WAIT=60")
	log, err := cmd.CombinedOutput()
	require.NoError(t, err, "run-cross.sh:\n%s", log)
	t.Logf("run-cross.sh:\n%s", log)

	rows := summary(t, filepath.Join(out, "summary.tsv"))
	var namespaces []string
	for k, dp := range dataplanes {
		// Worker 0's table knows the server on host B with that data plane's node IP.
		var st [2]netsetup.NodeStatus
		for i := range st {
			b, err := os.ReadFile(filepath.Join(out, dp, fmt.Sprintf("node-%d.json", i)))
			require.NoError(t, err)
			require.NoError(t, json.Unmarshal(b, &st[i]))
			namespaces = append(namespaces, st[i].Namespace)
		}
		assert.Equal(t, fmt.Sprintf("10.10.1.%d", 101+2*k), st[0].UnderlayIP, dp)
		require.Len(t, st[0].Services, 2)
		srv := st[0].Services[1].Instances[0]
		assert.Equal(t, "server-0", srv.Name)
		assert.Equal(t, fmt.Sprintf("10.10.1.%d", 102+2*k), srv.NodeIP, dp)
		assert.Equal(t, "10.18.1.2", srv.NSIP)

		assert.Greater(t, rows[dp+"/tcp-throughput/throughput"], 0.0, "TCP crossed on %s", dp)
		assert.Greater(t, rows[dp+"/rr-udp/latency (half round trip)"], 0.0, "UDP crossed both ways on %s", dp)
		assert.Greater(t, rows[dp+"/rr-tcp/latency (half round trip)"], 0.0, "TCP round trips crossed on %s", dp)
		assert.Contains(t, rows, dp+"/udp-jitter/loss")
	}

	for i := range s.hosts {
		assert.Equal(t, before[i], testenv.NetState(t, s.hosts[i]), "host %s is as before", hostNames[i])
	}
	entries, err := os.ReadDir("/run/netns")
	require.NoError(t, err)
	for _, e := range entries {
		for _, ns := range namespaces {
			assert.False(t, strings.HasPrefix(e.Name(), ns), "left behind: %s", e.Name())
		}
	}
}

// summary reads summary.tsv into dataplane/measurement/metric -> value.
func summary(t *testing.T, path string) map[string]float64 {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	rows := map[string]float64{}
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n")[1:] {
		f := strings.Split(line, "\t")
		require.Len(t, f, 6, line)
		v, err := strconv.ParseFloat(f[4], 64)
		require.NoError(t, err, "%s: the value parses", line)
		rows[f[1]+"/"+f[2]+"/"+f[3]] = v
	}
	return rows
}

// TestCrossHostFailures: through the ssh stand-in, a node whose peer never answers exits 2
// and leaves nothing; a node killed with SIGKILL leaves its worker namespace (with the macvlan
// child in it) until `edgebpf cleanup` on that host removes it; a node stopped with SIGTERM
// removes everything itself. The hosts' links, addresses and routes end as they began.
func TestCrossHostFailures(t *testing.T) {
	testenv.RequirePrivileged(t)
	requireTool(t, "nsenter", "the ssh stand-in enters the host's namespace")
	bin := buildEdgebpf(t)
	s := newStandIn(t)
	before := [2][]string{testenv.NetState(t, s.hosts[0]), testenv.NetState(t, s.hosts[1])}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	cluster := fmt.Sprintf("k%d", os.Getpid()%100000)
	node := func(i int, wait string) string {
		return fmt.Sprintf("exec %s node --api none --cluster %s --names a,b --placement a@0,b@1 --underlay lan0 --underlay-ip 10.10.1.%d/24 --worker %d --peer %d=10.10.1.%d --peer-wait %s --ready-file %s",
			bin, cluster, 101+i, i, 1-i, 102-i, wait, filepath.Join(s.homes[i], "ready.json"))
	}

	out, err := s.run(ctx, 0, node(0, "1s"))
	var ee *exec.ExitError
	require.ErrorAs(t, err, &ee, out)
	assert.Equal(t, 2, ee.ExitCode(), out)
	assert.Contains(t, out, "peer did not answer within 1s on lan0: "+cluster+"-w1 at 10.10.1.102")
	assert.Equal(t, before[0], testenv.NetState(t, s.hosts[0]))

	var procs [2]*exec.Cmd
	var st [2]netsetup.NodeStatus
	for i := range procs {
		procs[i] = exec.CommandContext(ctx, s.ssh, hostNames[i], node(i, "30s"))
		require.NoError(t, procs[i].Start())
	}
	defer func() {
		for _, p := range procs {
			if p.ProcessState == nil {
				_ = p.Process.Kill()
				_ = p.Wait()
			}
		}
	}()
	for i := range st {
		require.Eventually(t, func() bool {
			b, err := os.ReadFile(filepath.Join(s.homes[i], "ready.json"))
			return err == nil && json.Unmarshal(b, &st[i]) == nil
		}, 2*time.Minute, 50*time.Millisecond, "node %d is ready", i)
	}

	assert.Equal(t, 1, promiscuity(t, s.hosts[0]), "the macvlan child makes the veth promiscuous")

	// SIGKILL: the worker namespace and its macvlan child stay until cleanup.
	require.NoError(t, procs[0].Process.Kill())
	_ = procs[0].Wait()
	w0, err := netsetup.OpenNamespace(st[0].Namespace)
	require.NoError(t, err, "a killed node leaves its worker namespace")
	h, err := w0.Netlink()
	require.NoError(t, err)
	_, err = h.LinkByName(netsetup.UnderlayLink)
	h.Close()
	w0.Close()
	require.NoError(t, err, "with the macvlan child in it")
	out, err = s.run(ctx, 0, bin+" cleanup")
	require.NoError(t, err, out)
	assert.Contains(t, out, "removed namespace "+st[0].Namespace+"\n")
	_, err = os.Stat(filepath.Join("/run/netns", st[0].Namespace))
	assert.ErrorIs(t, err, os.ErrNotExist)
	assert.Eventually(t, func() bool { return promiscuity(t, s.hosts[0]) == 0 }, time.Minute, 50*time.Millisecond,
		"once the kernel has freed the namespace, the macvlan child is gone and the LAN device is no longer promiscuous")

	// SIGTERM: the node removes everything itself.
	require.NoError(t, procs[1].Process.Signal(unix.SIGTERM))
	require.NoError(t, procs[1].Wait())
	_, err = os.Stat(filepath.Join("/run/netns", st[1].Namespace))
	assert.ErrorIs(t, err, os.ErrNotExist)
	_, err = os.Stat(filepath.Join(s.homes[1], "ready.json"))
	assert.ErrorIs(t, err, os.ErrNotExist)
	for i := range s.hosts {
		assert.Equal(t, before[i], testenv.NetState(t, s.hosts[i]), "host %s is as before", hostNames[i])
	}
}

// promiscuity is the LAN device's promiscuity count: 1 while a macvlan child of the veth
// exists.
func promiscuity(t *testing.T, host *netsetup.Namespace) int {
	h, err := host.Netlink()
	require.NoError(t, err)
	defer h.Close()
	l, err := h.LinkByName("lan0")
	require.NoError(t, err)
	return l.Attrs().Promisc
}
