package manager

import (
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/edgebpf/edgebpf/dataplanes/ebpf/manager/emptyprog"
	"github.com/edgebpf/edgebpf/internal/testenv"
	"github.com/edgebpf/edgebpf/internal/testpkt"
)

var frame = testpkt.IPv4(testpkt.Spec{Proto: "tcp", Src: "10.18.0.2", Dst: "10.18.0.3", Sport: 40000, Dport: 5201, Payload: make([]byte, 10)})

const tcxNext = ^uint32(0) // TCX_NEXT (-1) as the test run returns it

// TestDispatcherRunsSetSlots runs the dispatcher in BPF test runs: it runs exactly the slots
// whose bit is set, on its own hook, and counts them only while counting is on; a slot
// without a program passes the packet on.
func TestDispatcherRunsSetSlots(t *testing.T) {
	testenv.RequirePrivileged(t)
	d, err := newDispatcher()
	require.NoError(t, err)
	defer d.close()

	ret, err := d.progs[hookIn].Run(&ebpf.RunOptions{Data: frame})
	require.NoError(t, err)
	assert.Equal(t, tcxNext, ret, "no slot: the packet goes on")

	require.NoError(t, d.setMask(hookIn, 1|1<<5|1<<31))
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
		if s == 0 || s == 5 || s == 31 {
			want = 3
		}
		assert.Equal(t, want, d.slotStat(hookIn, s).runs, "ingress slot %d", s)
		assert.Zero(t, d.slotStat(hookOut, s).runs, "egress slot %d", s)
	}
	_, err = d.progs[hookOut].Run(&ebpf.RunOptions{Data: frame})
	require.NoError(t, err)
	assert.Zero(t, d.slotStat(hookOut, 0).runs, "the egress mask is empty")
}

// TestDispatcherReturnsTheVerdict: a program in a slot returns its verdict to the dispatcher
// as a call would (the tail call replaces only the slot function's frame), so a later slot
// runs after TCX_NEXT and none after another verdict.
func TestDispatcherReturnsTheVerdict(t *testing.T) {
	testenv.RequirePrivileged(t)
	d, err := newDispatcher()
	require.NoError(t, err)
	defer d.close()
	empty, err := emptyprog.Load()
	require.NoError(t, err)
	defer empty.Close()
	drop := loadReturning(t, ebpf.AttachTCXIngress, 2) // TCX_DROP
	require.NoError(t, d.arrays[hookIn].Put(uint32(0), empty))
	require.NoError(t, d.arrays[hookIn].Put(uint32(1), drop))
	require.NoError(t, d.arrays[hookIn].Put(uint32(2), empty))
	counting.change(1)
	defer counting.change(-1)

	require.NoError(t, d.setMask(hookIn, 1|1<<2))
	ret, err := d.progs[hookIn].Run(&ebpf.RunOptions{Data: frame})
	require.NoError(t, err)
	assert.Equal(t, tcxNext, ret, "empty, then empty")
	assert.Equal(t, uint64(1), d.slotStat(hookIn, 2).runs, "the slot after an empty program ran")

	require.NoError(t, d.setMask(hookIn, 1|1<<1|1<<2))
	ret, err = d.progs[hookIn].Run(&ebpf.RunOptions{Data: frame})
	require.NoError(t, err)
	assert.Equal(t, uint32(2), ret, "the drop's verdict ends the chain")
	assert.Equal(t, uint64(1), d.slotStat(hookIn, 1).runs)
	assert.Equal(t, uint64(1), d.slotStat(hookIn, 2).runs, "no slot runs after the drop")
}

// TestDispatcherSlotRunsItsEntry: on both hooks, bit n of the mask runs the program in entry n
// of the program array and no other bit does, for every slot. (Slots once tail-called the
// entry their pasted digits spelled, 10a+b for slot 8a+b: slots 8 to 31 ran another slot's
// module or none.)
func TestDispatcherSlotRunsItsEntry(t *testing.T) {
	testenv.RequirePrivileged(t)
	d, err := newDispatcher()
	require.NoError(t, err)
	defer d.close()
	const all = uint64(1)<<DispatcherSlots - 1
	for h, at := range []ebpf.AttachType{ebpf.AttachTCXIngress, ebpf.AttachTCXEgress} {
		drop := loadReturning(t, at, 2) // TCX_DROP
		for n := range DispatcherSlots {
			require.NoError(t, d.arrays[h].Put(uint32(n), drop))
			require.NoError(t, d.setMask(h, all&^(1<<n)))
			ret, err := d.progs[h].Run(&ebpf.RunOptions{Data: frame})
			require.NoError(t, err)
			assert.Equal(t, tcxNext, ret, "hook %d: only bit %d runs entry %d", h, n, n)
			require.NoError(t, d.setMask(h, 1<<n))
			ret, err = d.progs[h].Run(&ebpf.RunOptions{Data: frame})
			require.NoError(t, err)
			assert.Equal(t, uint32(2), ret, "hook %d: bit %d runs entry %d", h, n, n)
			require.NoError(t, d.empty(h, n))
		}
		require.NoError(t, d.setMask(h, 0))
	}
}

// loadReturning loads a TCX program for the attach type that returns v.
func loadReturning(t *testing.T, at ebpf.AttachType, v int32) *ebpf.Program {
	t.Helper()
	p, err := ebpf.NewProgram(&ebpf.ProgramSpec{Type: ebpf.SchedCLS, AttachType: at, License: "GPL",
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, v), asm.Return()}})
	require.NoError(t, err)
	t.Cleanup(func() { _ = p.Close() })
	return p
}
