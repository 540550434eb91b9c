package ebpf_test

import (
	"testing"

	"github.com/edgebpf/edgebpf/dataplanes/ebpf"
	"github.com/edgebpf/edgebpf/dataplanes/proxytest"
	"github.com/edgebpf/edgebpf/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

func TestProxySuite(t *testing.T) {
	testenv.RequirePrivileged(t)
	proxytest.Run(t, func() proxytest.DataPlane { return ebpf.New() })
}

// TestProxySuiteAcrossWorkers: the eBPF tunnel passes the cross-worker suite.
func TestProxySuiteAcrossWorkers(t *testing.T) {
	testenv.RequirePrivileged(t)
	proxytest.RunCluster(t, func() proxytest.DataPlane { return ebpf.New() })
}
