package ebpf_test

import (
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	cebpf "github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/edgebpf/edgebpf/dataplanes/ebpf"
	"github.com/edgebpf/edgebpf/dataplanes/ebpf/manager"
	"github.com/edgebpf/edgebpf/dataplanes/ebpf/modules"
	"github.com/edgebpf/edgebpf/dataplanes/ebpf/modules/tunnel"
	"github.com/edgebpf/edgebpf/dataplanes/proxytest"
	"github.com/edgebpf/edgebpf/internal/testenv"
	"github.com/edgebpf/edgebpf/netsetup"
)

const (
	askPort  = 7400 // answers "<instance> <address it saw>"
	bulkPort = 7401 // sends bulkSize bytes and closes
	bulkSize = 4 << 20
)

// serve answers TCP and UDP on askPort in the instance's namespace with its name and the
// address it saw the request come from, and sends bulkSize bytes to every TCP connection on
// bulkPort.
func serve(t *testing.T, in *netsetup.Instance) {
	var ask, bulk net.Listener
	var pc net.PacketConn
	require.NoError(t, in.NS.Do(func() (err error) {
		if ask, err = net.Listen("tcp4", fmt.Sprintf(":%d", askPort)); err != nil {
			return err
		}
		if bulk, err = net.Listen("tcp4", fmt.Sprintf(":%d", bulkPort)); err != nil {
			return err
		}
		pc, err = net.ListenPacket("udp4", fmt.Sprintf(":%d", askPort))
		return err
	}))
	t.Cleanup(func() { ask.Close(); bulk.Close(); pc.Close() })
	go func() {
		for {
			c, err := ask.Accept()
			if err != nil {
				return
			}
			_, _ = fmt.Fprintf(c, "%s %s\n", in.Name, c.RemoteAddr())
			c.Close()
		}
	}()
	go func() {
		for {
			c, err := bulk.Accept()
			if err != nil {
				return
			}
			_, _ = c.Write(pattern(bulkSize))
			c.Close()
		}
	}()
	go func() {
		buf := make([]byte, 2048)
		for {
			_, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			_, _ = pc.WriteTo([]byte(fmt.Sprintf("%s %s", in.Name, from)), from)
		}
	}()
}

func pattern(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i % 251)
	}
	return b
}

// TestCrossNodeThroughTheTunnel runs the ebpf data plane on both workers of a cluster, with
// service a on worker 0 and service b on worker 1, and has each instance reach the other
// service through its service IP: over TCP and UDP the server sees the client's instance IP
// and the client only the service IP, and a bulk TCP transfer (GSO packets of the overlay MTU)
// arrives whole.
func TestCrossNodeThroughTheTunnel(t *testing.T) {
	testenv.RequirePrivileged(t)
	c := testenv.Cluster(t, netsetup.ClusterConfig{}, "a@0", "b@1")
	dps := deployCluster(t, c)
	for _, w := range c.Workers {
		u, _ := w.Underlay()
		assert.Equal(t, []string{"tunnel_decap"}, underlayPrograms(t, w, u.Index), "the decapsulation runs on the underlay link")
	}
	a, ok := c.Workers[0].Instance("a", 0)
	require.True(t, ok)
	b, ok := c.Workers[1].Instance("b", 0)
	require.True(t, ok)
	serve(t, a)
	serve(t, b)

	for _, d := range []struct {
		client, server *netsetup.Instance
		worker         *netsetup.Node
	}{{a, b, c.Workers[0]}, {b, a, c.Workers[1]}} {
		svc, ok := d.worker.Registry.Service(d.server.Service)
		require.True(t, ok)
		t.Run(d.client.Name+" to "+d.server.Service, func(t *testing.T) {
			require.NoError(t, d.client.NS.Do(func() error {
				for _, proto := range []string{"tcp4", "udp4"} {
					conn, err := net.DialTimeout(proto, netip.AddrPortFrom(svc.IP, askPort).String(), 3*time.Second)
					require.NoError(t, err, proto)
					_ = conn.SetDeadline(time.Now().Add(3 * time.Second))
					if proto == "udp4" {
						_, err = conn.Write([]byte("?"))
						require.NoError(t, err)
					}
					buf := make([]byte, 256)
					n, err := conn.Read(buf)
					require.NoError(t, err, "%s: an answer through the tunnel, from the service IP (a connected socket takes no other)", proto)
					name, seen, _ := strings.Cut(strings.TrimSpace(string(buf[:n])), " ")
					assert.Equal(t, d.server.Name, name, proto)
					host, _, _ := net.SplitHostPort(seen)
					assert.Equal(t, d.client.InstanceIP.String(), host, "%s: the server sees the client's instance IP", proto)
					conn.Close()
				}
				conn, err := net.DialTimeout("tcp4", netip.AddrPortFrom(svc.IP, bulkPort).String(), 3*time.Second)
				require.NoError(t, err)
				defer conn.Close()
				_ = conn.SetDeadline(time.Now().Add(20 * time.Second))
				got, err := io.ReadAll(conn)
				require.NoError(t, err)
				assert.Equal(t, bulkSize, len(got), "the bulk transfer arrives whole")
				assert.True(t, string(pattern(bulkSize)) == string(got), "and unchanged")
				return nil
			}))
		})
	}
	for i, dp := range dps {
		st := tunnelStats(t, dp)
		assert.NotZero(t, st.Sent, "worker %d sent through the tunnel", i)
		assert.NotZero(t, st.Delivered, "worker %d delivered requests", i)
		assert.NotZero(t, st.Reversed, "worker %d reverse-translated replies", i)
		assert.Zero(t, st.UnknownPeer+st.Truncated+st.Oversized+st.NotIPv4+st.NoTarget+st.Fragments+st.Errors+st.TooBig+st.SendErrors,
			"worker %d dropped nothing: %+v", i, st)
	}
}

// TestTunnelNeedsTheProxy checks the manager's rules for the tunnel: it needs the proxy
// deployed first, keeps it from being deleted, and leaves nothing on the underlay link.
func TestTunnelNeedsTheProxy(t *testing.T) {
	testenv.RequirePrivileged(t)
	c := testenv.Cluster(t, netsetup.ClusterConfig{}, "a@0", "b@1")
	w := c.Workers[0]
	u, _ := w.Underlay()
	m, err := manager.New(w, modules.Catalogue())
	require.NoError(t, err)
	defer m.Close()
	_, err = m.Create("tunnel", nil)
	require.ErrorIs(t, err, manager.ErrDependency, "no proxy yet")
	px, err := m.Create("proxy", nil)
	require.NoError(t, err)
	tu, err := m.Create("tunnel", nil)
	require.NoError(t, err)
	require.Len(t, tu.Programs, 1)
	assert.Equal(t, "ebu0", tu.Programs[0].Link)
	assert.Equal(t, []string{"tunnel_decap"}, underlayPrograms(t, w, u.Index))
	require.ErrorIs(t, m.Delete(px.ID), manager.ErrDependency, "the tunnel uses the proxy's sessions")
	require.NoError(t, m.Delete(tu.ID))
	assert.Empty(t, underlayPrograms(t, w, u.Index), "deleting the tunnel detaches it from the underlay")
	require.NoError(t, m.Delete(px.ID))

	// A standalone node has no underlay: the tunnel refuses it.
	node := testenv.Node(t)
	m2, err := manager.New(node, modules.Catalogue())
	require.NoError(t, err)
	defer m2.Close()
	_, err = m2.Create("proxy", nil)
	require.NoError(t, err)
	_, err = m2.Create("tunnel", nil)
	require.ErrorIs(t, err, manager.ErrDependency)
}

// underlayPrograms names the programs on the TCX ingress of the worker's underlay link.
func underlayPrograms(t *testing.T, w *netsetup.Node, index int) []string {
	var names []string
	require.NoError(t, w.NS.Do(func() error {
		res, err := link.QueryPrograms(link.QueryOptions{Target: index, Attach: cebpf.AttachTCXIngress})
		if err != nil {
			return err
		}
		for _, p := range res.Programs {
			prog, err := cebpf.NewProgramFromID(p.ID)
			if err != nil {
				return err
			}
			info, err := prog.Info()
			prog.Close()
			if err != nil {
				return err
			}
			names = append(names, info.Name)
		}
		return nil
	}))
	return names
}

func tunnelStats(t *testing.T, dp *ebpf.DataPlane) tunnel.Stats {
	st, err := deployed[*tunnel.Tunnel](t, dp, "tunnel").Stats()
	require.NoError(t, err)
	return st
}

// deployed returns the data plane's module of that name, failing t if there is none.
func deployed[M manager.Module](t *testing.T, dp *ebpf.DataPlane, name string) M {
	t.Helper()
	for _, inf := range dp.Manager().List() {
		if inf.Name == name {
			mod, ok := dp.Manager().Module(inf.ID)
			require.True(t, ok)
			return mod.(M)
		}
	}
	t.Fatalf("no %s module deployed", name)
	var zero M
	return zero
}

// deployCluster deploys the eBPF data plane on every worker of c (proxytest.DeployCluster),
// closed on the test's cleanup, and returns them in the workers' order.
func deployCluster(t *testing.T, c *netsetup.Cluster) []*ebpf.DataPlane {
	var dps []*ebpf.DataPlane
	for _, dp := range proxytest.DeployCluster(t, c, func() proxytest.DataPlane { return ebpf.New() }) {
		dps = append(dps, dp.(*ebpf.DataPlane))
	}
	return dps
}
