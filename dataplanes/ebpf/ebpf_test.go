package ebpf_test

import (
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/edgebpf/edgebpf/dataplanes/ebpf"
	"github.com/edgebpf/edgebpf/dataplanes/ebpf/manager"
	"github.com/edgebpf/edgebpf/dataplanes/proxytest"
	"github.com/edgebpf/edgebpf/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// TestProxySuite runs the proxy suite in both chain modes; dispatcher mode where the kernel
// loads BPF extension programs.
func TestProxySuite(t *testing.T) {
	testenv.RequirePrivileged(t)
	for _, c := range manager.ChainModes {
		t.Run(string(c), func(t *testing.T) {
			if c == manager.ChainDispatcher {
				if err := manager.ProbeDispatcher(); err != nil {
					t.Skip(err)
				}
			}
			proxytest.Run(t, func() proxytest.DataPlane {
				d := ebpf.New()
				d.SetChain(c)
				return d
			})
		})
	}
}

// TestSettingsNameTheChain: meta.json records the chain mode.
func TestSettingsNameTheChain(t *testing.T) {
	d := ebpf.New()
	assert.Equal(t, "dispatcher", d.Settings()["chain"], "the default")
	d.SetChain(manager.ChainTCX)
	assert.Equal(t, "tcx", d.Settings()["chain"])
}

// TestProxySuiteAcrossWorkers: the eBPF tunnel passes the cross-worker suite.
func TestProxySuiteAcrossWorkers(t *testing.T) {
	testenv.RequirePrivileged(t)
	proxytest.RunCluster(t, func() proxytest.DataPlane { return ebpf.New() })
}
