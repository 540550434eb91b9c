package subjects_test

import (
	"testing"

	"github.com/edgebpf/edgebpf/dataplanes/ebpf"
	"github.com/edgebpf/edgebpf/dataplanes/proxytest"
	"github.com/edgebpf/edgebpf/dataplanes/userspace"
	"github.com/edgebpf/edgebpf/internal/testenv"
)

func newEBPF() proxytest.DataPlane      { return ebpf.New() }
func newUserspace() proxytest.DataPlane { return userspace.New() }

// TestTunnelsInteroperate: Riegel's compatibility requirement across workers. The eBPF tunnel
// and the user-space tunnel speak Oakestra's wire format to each other, both ways: TCP and
// UDP through the service IP with the client on an eBPF worker and the server on a user-space
// worker, and the other way round.
func TestTunnelsInteroperate(t *testing.T) {
	testenv.RequirePrivileged(t)
	t.Run("ebpf client worker, userspace server worker", func(t *testing.T) {
		proxytest.RunCluster(t, newEBPF, newUserspace)
	})
	t.Run("userspace client worker, ebpf server worker", func(t *testing.T) {
		proxytest.RunCluster(t, newUserspace, newEBPF)
	})
}

func TestMain(m *testing.M) { testenv.Main(m) }
