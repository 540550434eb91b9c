package manager

import (
	"testing"

	"github.com/cilium/ebpf"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/edgebpf/edgebpf/dataplanes/ebpf/manager/emptyprog"
	"github.com/edgebpf/edgebpf/internal/testenv"
	"github.com/edgebpf/edgebpf/internal/testpkt"
)

var frame = testpkt.IPv4(testpkt.Spec{Proto: "tcp", Src: "10.18.0.2", Dst: "10.18.0.3", Sport: 40000, Dport: 5201, Payload: make([]byte, 10)})

const tcxNext = ^uint32(0) // TCX_NEXT (-1) as the test run returns it

// TestDispatcherRunsSetSlots runs the dispatcher in BPF test runs: it runs exactly the slots
// whose bit is set, on its own hook, and counts them only while counting is on. The slots are
// empty here (they pass the packet on), which needs no extension support.
func TestDispatcherRunsSetSlots(t *testing.T) {
	testenv.RequirePrivileged(t)
	d, err := newDispatcher()
	require.NoError(t, err)
	defer d.close()

	ret, err := d.progs[hookIn].Run(&ebpf.RunOptions{Data: frame})
	require.NoError(t, err)
	assert.Equal(t, tcxNext, ret, "no slot: the packet goes on")

	require.NoError(t, d.setMask(hookIn, 1|1<<5|1<<63))
	ret, err = d.progs[hookIn].Run(&ebpf.RunOptions{Data: frame})
	require.NoError(t, err)
	assert.Equal(t, tcxNext, ret)
	assert.Zero(t, d.slotStat(hookIn, 0).runs, "not counted while counting is off")

	counting.change(1)
	defer counting.change(-1)
	for range 3 {
		_, err = d.progs[hookIn].Run(&ebpf.RunOptions{Data: frame})
		require.NoError(t, err)
	}
	for s := range DispatcherSlots {
		want := uint64(0)
		if s == 0 || s == 5 || s == 63 {
			want = 3
		}
		assert.Equal(t, want, d.slotStat(hookIn, s).runs, "ingress slot %d", s)
		assert.Zero(t, d.slotStat(hookOut, s).runs, "egress slot %d", s)
	}
	_, err = d.progs[hookOut].Run(&ebpf.RunOptions{Data: frame})
	require.NoError(t, err)
	assert.Zero(t, d.slotStat(hookOut, 0).runs, "the egress mask is empty")
}

// BenchmarkDispatcherCost measures the dispatcher's per-packet cost in BPF test runs on a
// 64-byte TCP frame, next to the empty program alone, in one run: the dispatcher with no
// slot set, and with 1 and 4 empty slots set (each slot an empty function, as an empty
// module would be):
//
//	go test -run XXX -bench DispatcherCost -count 5 ./dataplanes/ebpf/manager/
func BenchmarkDispatcherCost(b *testing.B) {
	testenv.RequirePrivileged(b)
	empty, err := emptyprog.Load()
	if err != nil {
		b.Fatal(err)
	}
	defer empty.Close()
	d, err := newDispatcher()
	if err != nil {
		b.Fatal(err)
	}
	defer d.close()
	var base float64
	for _, c := range []struct {
		name string
		mask uint64
	}{{"empty", 0}, {"dispatcher-0-slots", 0}, {"dispatcher-1-slot", 1}, {"dispatcher-4-slots", 0xf}} {
		b.Run(c.name, func(b *testing.B) {
			prog := d.progs[hookIn]
			if c.name == "empty" {
				prog = empty
			}
			if err := d.setMask(hookIn, c.mask); err != nil {
				b.Fatal(err)
			}
			_, per, err := prog.Benchmark(frame, b.N, nil)
			if err != nil {
				b.Fatal(err)
			}
			ns := float64(per.Nanoseconds())
			if c.name == "empty" {
				base = ns
			}
			b.ReportMetric(ns, "ns/pkt")
			if base > 0 {
				b.ReportMetric(ns/base, "x-empty")
			}
		})
	}
}
