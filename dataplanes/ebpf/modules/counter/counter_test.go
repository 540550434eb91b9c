package counter

import (
	"testing"

	"github.com/cilium/ebpf"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/edgebpf/edgebpf/internal/testenv"
	"github.com/edgebpf/edgebpf/internal/testpkt"
	"github.com/edgebpf/edgebpf/netsetup"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// skbContext sets the interface a test run's packet appears on.
type skbContext struct {
	_       [10]uint32 // len .. cb[0]: fields before ifindex in struct __sk_buff
	Ifindex uint32
}

func TestCountsPerInterfaceAndHook(t *testing.T) {
	testenv.RequirePrivileged(t)
	c, err := New(nil)
	require.NoError(t, err)
	defer c.Close()
	// Loopback (ifindex 1) stands in for a veth: test runs happen on it.
	lo := &netsetup.Instance{Name: "lo-0", Veth: "lo", VethIndex: 1}
	require.NoError(t, c.Attached(lo))

	frame := testpkt.IPv4(testpkt.Spec{Proto: "udp", Src: "10.18.0.2", Dst: "10.18.0.3", Sport: 1, Dport: 2})
	in, out := c.Programs()
	for range 3 {
		ret, err := in.Run(&ebpf.RunOptions{Data: frame, Context: skbContext{Ifindex: 1}})
		require.NoError(t, err)
		assert.EqualValues(t, 0xffffffff, ret, "TCX_NEXT: the packet goes on along the chain")
	}
	_, err = out.Run(&ebpf.RunOptions{Data: frame, Context: skbContext{Ifindex: 1}})
	require.NoError(t, err)

	counts, err := c.Read()
	require.NoError(t, err)
	got := counts["lo"]
	assert.Equal(t, "lo-0", got.Instance)
	assert.EqualValues(t, 3, got.Egress.Packets, "TC ingress = sent by the service")
	assert.EqualValues(t, 3*len(frame), got.Egress.Bytes)
	assert.EqualValues(t, 1, got.Ingress.Packets, "TC egress = received by the service")

	c.Detached(lo)
	counts, err = c.Read()
	require.NoError(t, err)
	assert.Empty(t, counts)

	// A packet on an interface without counters is counted as missed, not lost silently.
	_, err = in.Run(&ebpf.RunOptions{Data: frame, Context: skbContext{Ifindex: 1}})
	require.NoError(t, err)
	var missed []uint64
	require.NoError(t, c.objs.CounterMissed.Lookup(uint32(0), &missed))
	var sum uint64
	for _, v := range missed {
		sum += v
	}
	assert.EqualValues(t, 1, sum)
}

func TestRejectsConfig(t *testing.T) {
	_, err := New([]byte(`{"x":1}`))
	assert.ErrorContains(t, err, "takes no configuration")
	_, err = New([]byte(`[]`))
	assert.Error(t, err)
}
