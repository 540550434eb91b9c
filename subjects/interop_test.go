package subjects_test

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/edgebpf/edgebpf/dataplanes/ebpf"
	"github.com/edgebpf/edgebpf/dataplanes/proxytest"
	"github.com/edgebpf/edgebpf/dataplanes/userspace"
	"github.com/edgebpf/edgebpf/internal/testenv"
	"github.com/edgebpf/edgebpf/netsetup"
)

func newEBPF() proxytest.DataPlane      { return ebpf.New() }
func newUserspace() proxytest.DataPlane { return userspace.New() }

// mixed are the two mixed clusters: worker 0 (the client's) first.
var mixed = []struct {
	name string
	dps  []func() proxytest.DataPlane
}{
	{"ebpf client worker, userspace server worker", []func() proxytest.DataPlane{newEBPF, newUserspace}},
	{"userspace client worker, ebpf server worker", []func() proxytest.DataPlane{newUserspace, newEBPF}},
}

// TestTunnelsInteroperate: Riegel's compatibility requirement across workers. The eBPF tunnel
// and the user-space tunnel speak Oakestra's wire format to each other, both ways: TCP and
// UDP through the service IP with the client on an eBPF worker and the server on a user-space
// worker, and the other way round.
func TestTunnelsInteroperate(t *testing.T) {
	testenv.RequirePrivileged(t)
	for _, m := range mixed {
		t.Run(m.name, func(t *testing.T) { proxytest.RunCluster(t, m.dps...) })
	}
}

// bulkPort is where echoAll listens; bulkSize is what the client sends and gets back.
const (
	bulkPort = 7401
	bulkSize = 2 << 20
)

// TestTunnelsInteroperateBulk: a bulk TCP transfer through the service IP crosses a mixed
// cluster whole in both directions, upload and download. The eBPF worker's kernel sends GSO
// packets far beyond the overlay MTU (the veth underlay keeps them whole), and the user-space
// tunnel cuts them into segments as a NIC would.
func TestTunnelsInteroperateBulk(t *testing.T) {
	testenv.RequirePrivileged(t)
	data := make([]byte, bulkSize)
	for i := range data {
		data[i] = byte(i % 251)
	}
	for _, m := range mixed {
		t.Run(m.name, func(t *testing.T) {
			c := testenv.Cluster(t, netsetup.ClusterConfig{}, "client@0", "server@1")
			proxytest.DeployCluster(t, c, m.dps...)
			client, ok := c.Workers[0].Instance("client", 0)
			require.True(t, ok)
			srv, ok := c.Workers[1].Instance("server", 0)
			require.True(t, ok)
			svc, ok := c.Workers[0].Registry.Service("server")
			require.True(t, ok)
			echoAll(t, srv)
			var got []byte
			require.NoError(t, client.NS.Do(func() error {
				conn, err := net.DialTimeout("tcp4", fmt.Sprintf("%s:%d", svc.IP, bulkPort), 5*time.Second)
				if err != nil {
					return err
				}
				defer conn.Close()
				_ = conn.SetDeadline(time.Now().Add(60 * time.Second)) // against a hang, not a timing bound
				if _, err := conn.Write(data); err != nil {
					return fmt.Errorf("upload: %w", err)
				}
				if err := conn.(*net.TCPConn).CloseWrite(); err != nil {
					return err
				}
				got, err = io.ReadAll(conn)
				return err
			}))
			assert.Equal(t, len(data), len(got))
			assert.True(t, bytes.Equal(data, got), "the bytes uploaded come back whole and in order")
		})
	}
}

// echoAll serves bulkPort in the instance's namespace: it reads a connection to its end, then
// sends back what it read and closes.
func echoAll(t *testing.T, in *netsetup.Instance) {
	var ln net.Listener
	require.NoError(t, in.NS.Do(func() (err error) {
		ln, err = net.Listen("tcp4", fmt.Sprintf(":%d", bulkPort))
		return err
	}))
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer conn.Close()
				_ = conn.SetDeadline(time.Now().Add(60 * time.Second))
				b, err := io.ReadAll(conn)
				if err == nil {
					_, _ = conn.Write(b)
				}
			}()
		}
	}()
}

func TestMain(m *testing.M) { testenv.Main(m) }
