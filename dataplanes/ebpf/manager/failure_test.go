package manager_test

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/edgebpf/edgebpf/dataplanes/ebpf/manager"
	"github.com/edgebpf/edgebpf/dataplanes/ebpf/modules"
	"github.com/edgebpf/edgebpf/internal/testenv"
	"github.com/edgebpf/edgebpf/netsetup"
)

// hookIDs returns the program ids the kernel runs on one of in's TCX hooks, in order.
func hookIDs(t *testing.T, node *netsetup.Node, in *netsetup.Instance, attach ebpf.AttachType) []ebpf.ProgramID {
	t.Helper()
	var ids []ebpf.ProgramID
	require.NoError(t, node.NS.Do(func() error {
		res, err := link.QueryPrograms(link.QueryOptions{Target: in.VethIndex, Attach: attach})
		if err != nil {
			return err
		}
		for _, p := range res.Programs {
			ids = append(ids, p.ID)
		}
		return nil
	}))
	return ids
}

// wantChains checks that every instance of the node runs exactly the listed modules' programs,
// in list order, on both hooks: the program ids on the TCX hooks, or in dispatcher mode the
// names GET /chains reads from the kernel's freplace links.
func wantChains(t *testing.T, node *netsetup.Node, m *manager.Manager, mods []manager.Info) {
	t.Helper()
	if m.Chain() == manager.ChainDispatcher {
		var in, eg []string
		for _, m := range mods {
			for _, p := range m.Programs {
				if p.Hook == "tc_ingress" {
					in = append(in, p.Name)
				} else {
					eg = append(eg, p.Name)
				}
			}
		}
		chains, err := m.Chains()
		require.NoError(t, err)
		for _, s := range node.Registry.Services() {
			for _, ins := range node.Registry.Instances(s.Name) {
				assert.Equal(t, onHook(m.Chain(), "in", in...), chains[ins.Veth]["tc_ingress"], "%s ingress", ins.Veth)
				assert.Equal(t, onHook(m.Chain(), "out", eg...), chains[ins.Veth]["tc_egress"], "%s egress", ins.Veth)
			}
		}
		return
	}
	var in, eg []ebpf.ProgramID
	for _, m := range mods {
		for _, p := range m.Programs {
			if p.Hook == "tc_ingress" {
				in = append(in, ebpf.ProgramID(p.ID))
			} else {
				eg = append(eg, ebpf.ProgramID(p.ID))
			}
		}
	}
	for _, s := range node.Registry.Services() {
		for _, ins := range node.Registry.Instances(s.Name) {
			assert.Equal(t, in, hookIDs(t, node, ins, ebpf.AttachTCXIngress), "%s ingress", ins.Veth)
			assert.Equal(t, eg, hookIDs(t, node, ins, ebpf.AttachTCXEgress), "%s egress", ins.Veth)
		}
	}
}

// TestDeleteWhilePacketsFlow deletes the middle of three modules, a counter, while
// connections run: the traffic is not disturbed, the other two keep their order everywhere,
// and once Delete has returned the deleted module's programs (kept open here, with its map)
// never run again: in tcx mode the kernel's run counts say so, in either mode its counts.
func TestDeleteWhilePacketsFlow(t *testing.T) { eachChain(t, testDeleteWhilePacketsFlow) }

func testDeleteWhilePacketsFlow(t *testing.T, chain manager.Chain) {
	a := newAPI(t, chain)
	first := a.create("firewall", `{"default":"pass"}`)
	mid := a.create("counter", "")
	last := a.create("counter", "")
	var held []*ebpf.Program
	for _, p := range mid.Programs {
		prog, err := ebpf.NewProgramFromID(ebpf.ProgramID(p.ID))
		require.NoError(t, err)
		defer prog.Close()
		held = append(held, prog)
	}
	counts := heldCounts(t, held[0])
	st, err := manager.CountRunTime()
	require.NoError(t, err)
	defer st.Close()

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	errs := make(chan error, 1)
	go func() {
		var failed error
		for i := 0; ctx.Err() == nil; i++ {
			if err := connect(t, a.node, 7400+i%50); err != nil && failed == nil {
				failed = err
			}
		}
		errs <- failed
	}()
	require.NoError(t, connect(t, a.node, 7399), "traffic flows before the delete")
	code, out := a.do("DELETE", fmt.Sprintf("/ebpf/%d", mid.ID), "")
	require.Equal(t, http.StatusOK, code, out)
	packets := counts()
	var runs []uint64
	for _, p := range held {
		s, err := p.Stats()
		require.NoError(t, err)
		runs = append(runs, s.RunCount)
	}
	for i := range 5 {
		require.NoError(t, connect(t, a.node, 7460+i), "traffic flows after the delete")
	}
	cancel()
	assert.NoError(t, <-errs, "no connection failed while the module went")
	for i, p := range held {
		s, err := p.Stats()
		require.NoError(t, err)
		assert.Equal(t, runs[i], s.RunCount, "the deleted module's program %d ran after Delete returned", i)
	}
	assert.Equal(t, packets, counts(), "the deleted counter counted after Delete returned")
	wantChains(t, a.node, a.m, []manager.Info{first, last})
}

// heldCounts opens the counter_counts map of a counter's program and returns a function that
// sums its packets.
func heldCounts(t *testing.T, prog *ebpf.Program) func() uint64 {
	t.Helper()
	info, err := prog.Info()
	require.NoError(t, err)
	ids, _ := info.MapIDs()
	var counts *ebpf.Map
	for _, id := range ids {
		m, err := ebpf.NewMapFromID(id)
		require.NoError(t, err)
		if mi, err := m.Info(); err == nil && mi.Name == "counter_counts" {
			counts = m
			continue
		}
		m.Close()
	}
	require.NotNil(t, counts, "the counter's program uses counter_counts")
	t.Cleanup(func() { counts.Close() })
	return func() uint64 {
		var (
			key    [8]byte
			values [][16]byte
			sum    uint64
		)
		it := counts.Iterate()
		for it.Next(&key, &values) {
			for _, v := range values {
				sum += binary.NativeEndian.Uint64(v[:8])
			}
		}
		require.NoError(t, it.Err())
		return sum
	}
}

// TestInstanceRemovedWhileModuleCreated removes instances while a module is being attached to
// all of them: the module ends up on exactly the instances that remain, in chain order, and
// deleting it leaves nothing attached.
func TestInstanceRemovedWhileModuleCreated(t *testing.T) {
	eachChain(t, testInstanceRemovedWhileModuleCreated)
}

func testInstanceRemovedWhileModuleCreated(t *testing.T, chain manager.Chain) {
	node := testenv.Node(t, "client")
	if _, err := node.AddService("many"); err != nil {
		t.Fatal(err)
	}
	var ins []*netsetup.Instance
	for range 16 {
		in, err := node.AddInstance("many")
		require.NoError(t, err)
		ins = append(ins, in)
	}
	m, err := manager.New(node, modules.Catalogue(), manager.WithChain(chain))
	require.NoError(t, err)
	defer func() { require.NoError(t, m.Close()) }()
	first, err := m.Create("counter", nil)
	require.NoError(t, err)

	var wg sync.WaitGroup
	var created manager.Info
	var createErr error
	wg.Go(func() { created, createErr = m.Create("firewall", json.RawMessage(`{"default":"pass"}`)) })
	for _, in := range ins[:8] {
		require.NoError(t, node.RemoveInstance(in))
	}
	wg.Wait()
	require.NoError(t, createErr)

	var want []string
	for _, s := range node.Registry.Services() {
		for _, in := range node.Registry.Instances(s.Name) {
			want = append(want, in.Veth)
		}
	}
	slices.Sort(want)
	for _, id := range []int{first.ID, created.ID} {
		inf, err := m.Get(id)
		require.NoError(t, err)
		assert.Equal(t, want, inf.Attached, "module %d is attached to exactly the remaining instances", id)
	}
	first, _ = m.Get(first.ID)
	created, _ = m.Get(created.ID)
	wantChains(t, node, m, []manager.Info{first, created})
	_, err = m.DeleteAll()
	require.NoError(t, err)
	wantChains(t, node, m, nil)
}

// TestConcurrentCreates has two API clients create modules at once: every request succeeds
// with its own id, and every veth's chain holds all of them in the order the manager lists.
func TestConcurrentCreates(t *testing.T) { eachChain(t, testConcurrentCreates) }

func testConcurrentCreates(t *testing.T, chain manager.Chain) {
	a := newAPI(t, chain)
	const each = 4
	var wg sync.WaitGroup
	ids := make(chan int, 2*each)
	for c := range 2 {
		wg.Go(func() {
			for range each {
				name, cfg := "counter", ""
				if c == 1 {
					name, cfg = "firewall", `{"default":"pass"}`
				}
				ids <- a.create(name, cfg).ID
			}
		})
	}
	wg.Wait()
	close(ids)
	seen := map[int]bool{}
	for id := range ids {
		assert.False(t, seen[id], "id %d given twice", id)
		seen[id] = true
	}
	assert.Len(t, seen, 2*each)
	list := a.m.List()
	require.Len(t, list, 2*each)
	for i, inf := range list {
		assert.Equal(t, i, inf.Position)
	}
	wantChains(t, a.node, a.m, list)
}

// TestDispatcherCompacts fills the dispatcher's slots, deletes all but the last module and
// creates one more: the survivor moves to the first slot, keeping chain order, while packets
// flow, and the new module runs after it.
func TestDispatcherCompacts(t *testing.T) {
	testenv.RequirePrivileged(t)
	if err := manager.ProbeDispatcher(); err != nil {
		t.Skip(err)
	}
	a := newAPI(t, manager.ChainDispatcher)
	var ids []int
	for range a.m.Limit() {
		ids = append(ids, a.create("counter", "").ID)
	}
	for _, id := range ids[:len(ids)-1] {
		code, out := a.do("DELETE", fmt.Sprintf("/ebpf/%d", id), "")
		require.Equal(t, http.StatusOK, code, out)
	}
	survivor := ids[len(ids)-1]
	client, _ := a.node.Instance("client", 0)
	require.NoError(t, connect(t, a.node, 7600))
	n := a.sentBy(survivor, client)
	require.Positive(t, n)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	errs := make(chan error, 1)
	go func() {
		var failed error
		for i := 0; ctx.Err() == nil; i++ {
			if err := connect(t, a.node, 7610+i%50); err != nil && failed == nil {
				failed = err
			}
		}
		errs <- failed
	}()
	fw := a.create("firewall", `{"default":"pass"}`) // the last slot is taken: compaction
	cancel()
	assert.NoError(t, <-errs, "traffic is not disturbed while the survivor moves")
	list := a.m.List()
	require.Len(t, list, 2)
	wantChains(t, a.node, a.m, list)
	assert.Equal(t, []int{survivor, fw.ID}, []int{list[0].ID, list[1].ID})
	require.NoError(t, connect(t, a.node, 7601))
	assert.Greater(t, a.sentBy(survivor, client), n, "the survivor counts in its new slot")
}
