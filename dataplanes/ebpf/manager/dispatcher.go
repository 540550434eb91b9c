package manager

import (
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"

	"github.com/edgebpf/edgebpf/dataplanes/ebpf/manager/emptyprog"
	parallelpkg "github.com/edgebpf/edgebpf/internal/parallel"
	"github.com/edgebpf/edgebpf/netsetup"
)

// Chain is how a manager chains its modules' programs on a veth's TCX hooks.
type Chain string

const (
	// ChainTCX attaches every module's programs to every veth as TCX links, ordered with TCX
	// anchors: each attach and detach waits for an RCU grace period in the kernel, so creating
	// a module costs a grace period per instance and hook.
	ChainTCX Chain = "tcx"
	// ChainDispatcher attaches one dispatcher program per hook to every veth once, when the
	// instance appears; the modules' programs, unchanged, sit in the dispatcher's program
	// arrays, which it runs slot by slot (bpf/dispatcher.c), so creating a module writes two
	// array entries whatever the number of instances. The dispatcher's slots are node-wide:
	// every instance runs the same chain. It holds DispatcherSlots modules.
	ChainDispatcher Chain = "dispatcher"
)

// DefaultChain is the chain mode of a manager given none. The dispatcher, since creating a
// module on 200 instances takes it about 3 ms against about 5 s in tcx mode, adding an
// instance to a node with 4 modules about 30 ms against 170 ms, for about 5 ns more per
// packet (README, "Module chains at scale").
const DefaultChain = ChainDispatcher

// ChainModes lists the chain modes, the default first.
var ChainModes = []Chain{ChainDispatcher, ChainTCX}

// ParseChain returns the chain mode named s ("" is DefaultChain).
func ParseChain(s string) (Chain, error) {
	switch Chain(s) {
	case "":
		return DefaultChain, nil
	case ChainTCX, ChainDispatcher:
		return Chain(s), nil
	}
	return "", fmt.Errorf("unknown chain mode %q: use tcx or dispatcher", s)
}

// DispatcherSlots is how many modules a dispatcher runs per hook: a packet makes one tail call
// per module, and the kernel allows 33 per packet (MAX_TAIL_CALL_CNT).
const DispatcherSlots = 32

// Load loads a module's BPF collection into objs, as bpf2go's LoadAndAssign does. The manager
// hands every Factory the Load of its chain mode, so a module loads its programs only through
// it and its BPF code is the same in every mode; in dispatcher mode Load checks that every
// program is a tcx/ingress or tcx/egress program, as the dispatcher's program arrays require.
type Load func(spec *ebpf.CollectionSpec, objs any) error

// LoadTCX loads spec's programs as they are, TCX programs; for modules used without a manager
// or by a manager in tcx mode.
func LoadTCX(spec *ebpf.CollectionSpec, objs any) error { return spec.LoadAndAssign(objs, nil) }

// ErrNoDispatcher is returned in dispatcher mode when the kernel cannot load the dispatcher:
// its slots are functions that tail-call, which only some BPF JITs allow.
var ErrNoDispatcher = errors.New("this kernel does not load the chain dispatcher (it needs a BPF JIT that mixes tail calls and function calls: x86-64 or arm64); use --chain tcx")

var probeOnce = sync.OnceValue(probeDispatcher)

// ProbeDispatcher says whether this kernel runs the dispatcher: it loads one and puts the
// empty program into a slot. The answer is cached.
func ProbeDispatcher() error { return probeOnce() }

func probeDispatcher() error {
	d, err := newDispatcher()
	if err != nil {
		return fmt.Errorf("%w: %w", ErrNoDispatcher, err)
	}
	defer d.close()
	prog, err := emptyprog.Load()
	if err != nil {
		return err
	}
	defer prog.Close()
	if err := d.arrays[hookIn].Put(uint32(0), prog); err != nil {
		return fmt.Errorf("%w: %w", ErrNoDispatcher, err)
	}
	return nil
}

// hookIndex numbers the hooks as the dispatcher does.
const (
	hookIn  = 0
	hookOut = 1
)

// dispatcher is a manager's pair of dispatcher programs with their program arrays, the veths
// they are attached to, and which module's program holds each slot.
type dispatcher struct {
	objs   dispatcherObjects
	progs  [2]*ebpf.Program
	arrays [2]*ebpf.Map
	ids    [2]ebpf.ProgramID
	at     map[int]*attachment // the dispatcher's TCX links by veth ifindex
	slots  [2][DispatcherSlots]*entry
	mask   [2]uint64
	ncpu   int
	// grace is a one-entry map-of-maps holding graceInner, for waitRuns.
	grace, graceInner *ebpf.Map
}

// plugged is a module's place in the dispatcher on one hook.
type plugged struct {
	slot int
	base runStat // runs counted in slots it held before (compaction moves modules)
}

type runStat struct {
	runs uint64
	ns   uint64
}

func newDispatcher() (*dispatcher, error) {
	d := &dispatcher{at: map[int]*attachment{}, ncpu: ebpf.MustPossibleCPU()}
	if err := loadDispatcherObjects(&d.objs, nil); err != nil {
		return nil, fmt.Errorf("load chain dispatcher: %w", err)
	}
	if err := d.newGrace(); err != nil {
		return nil, errors.Join(err, d.objs.Close())
	}
	d.progs = [2]*ebpf.Program{d.objs.DispIn, d.objs.DispOut}
	d.arrays = [2]*ebpf.Map{d.objs.DispInProgs, d.objs.DispOutProgs}
	for h, p := range d.progs {
		info, err := p.Info()
		if err != nil {
			return nil, errors.Join(fmt.Errorf("chain dispatcher info: %w", err), d.closeMaps())
		}
		d.ids[h], _ = info.ID()
	}
	counting.add(d)
	return d, nil
}

// newGrace creates the maps of waitRuns.
func (d *dispatcher) newGrace() error {
	inner := &ebpf.MapSpec{Name: "disp_grace_in", Type: ebpf.Array, KeySize: 4, ValueSize: 4, MaxEntries: 1}
	var err error
	if d.graceInner, err = ebpf.NewMap(inner); err != nil {
		return fmt.Errorf("chain dispatcher grace map: %w", err)
	}
	outer := &ebpf.MapSpec{Name: "disp_grace", Type: ebpf.ArrayOfMaps, KeySize: 4, ValueSize: 4, MaxEntries: 1, InnerMap: inner}
	if d.grace, err = ebpf.NewMap(outer); err != nil {
		return errors.Join(fmt.Errorf("chain dispatcher grace map: %w", err), d.graceInner.Close())
	}
	return nil
}

// closeMaps releases the dispatcher's programs and maps.
func (d *dispatcher) closeMaps() error {
	return errors.Join(d.objs.Close(), d.grace.Close(), d.graceInner.Close())
}

// load loads spec after checking that its programs fit the dispatcher's program arrays: a
// program array takes programs of its owner's type and attach type only.
func (d *dispatcher) load(spec *ebpf.CollectionSpec, objs any) error {
	for name, ps := range spec.Programs {
		if ps.Type != ebpf.SchedCLS || ps.AttachType != ebpf.AttachTCXIngress && ps.AttachType != ebpf.AttachTCXEgress {
			return fmt.Errorf("program %s is not a tcx/ingress or tcx/egress program, which the dispatcher runs", name)
		}
	}
	return spec.LoadAndAssign(objs, nil)
}

// setMask publishes hook h's slot bits. The word lies in memory shared with the programs
// (the .bss map, mmapped) and is copied there whole: 8 aligned bytes, one store.
func (d *dispatcher) setMask(h int, mask uint64) error {
	d.mask[h] = mask
	if err := [2]*ebpf.Variable{d.objs.DispMaskIn, d.objs.DispMaskOut}[h].Set(mask); err != nil {
		return fmt.Errorf("chain dispatcher mask: %w", err)
	}
	return nil
}

// free returns the slot after the last taken one on hook h, or DispatcherSlots when the last
// slot is taken.
func (d *dispatcher) free(h int) int {
	for i := DispatcherSlots - 1; i >= 0; i-- {
		if d.slots[h][i] != nil {
			return i + 1
		}
	}
	return 0
}

// plug puts e's programs into the slot after the last taken one on each hook; the chain runs
// them from the moment their bit is set.
func (d *dispatcher) plug(e *entry) error {
	for h, p := range e.hookPrograms() {
		if p == nil {
			continue
		}
		slot := d.free(h)
		if slot == DispatcherSlots {
			if err := d.compact(h); err != nil {
				return errors.Join(err, d.unplug(e))
			}
			slot = d.free(h)
		}
		if slot == DispatcherSlots {
			return errors.Join(fmt.Errorf("%w: the dispatcher's %d slots are taken", ErrChainFull, DispatcherSlots), d.unplug(e))
		}
		if p.Type() != ebpf.SchedCLS {
			return errors.Join(fmt.Errorf("module %s's program %s is a %s program, not a TCX one", e.name, p, p.Type()), d.unplug(e))
		}
		pl, err := d.attach(h, slot, p)
		if err != nil {
			return errors.Join(err, d.unplug(e))
		}
		d.slots[h][slot], e.plug[h] = e, pl
		if err := d.setMask(h, d.mask[h]|1<<slot); err != nil {
			return errors.Join(err, d.unplug(e))
		}
	}
	return nil
}

// attach puts p into slot on hook h, its statistics zeroed first; the slot runs once its bit
// is set.
func (d *dispatcher) attach(h, slot int, p *ebpf.Program) (*plugged, error) {
	if err := d.objs.DispStats.Put(uint32(h*DispatcherSlots+slot), make([]dispatcherDispStat, d.ncpu)); err != nil {
		return nil, fmt.Errorf("reset dispatcher slot %d statistics: %w", slot, err)
	}
	if err := d.arrays[h].Put(uint32(slot), p); err != nil {
		return nil, fmt.Errorf("put a program into dispatcher slot %d: %w", slot, err)
	}
	return &plugged{slot: slot}, nil
}

// empty removes the program from slot on hook h.
func (d *dispatcher) empty(h, slot int) error {
	if err := d.arrays[h].Delete(uint32(slot)); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return fmt.Errorf("empty dispatcher slot %d: %w", slot, err)
	}
	return nil
}

// unplug takes e out of the chain: its bits first, so no packet reaches the program when its
// slot is emptied.
func (d *dispatcher) unplug(e *entry) error {
	var errs []error
	for h, pl := range e.plug {
		if pl == nil {
			continue
		}
		errs = append(errs, d.setMask(h, d.mask[h]&^(1<<pl.slot)), d.empty(h, pl.slot))
		d.slots[h][pl.slot], e.plug[h] = nil, nil
	}
	return errors.Join(errs...)
}

// compact moves hook h's modules to the lowest slots, keeping their order. A module moves
// from slot s to a lower free slot t with no module between them: its program is put into t,
// then one mask store clears s and sets t. A packet that read the mask before that store may
// still be on its way to slot s, so s keeps the program until every program run that could
// have read the old mask is over (waitRuns); only then is s emptied or reused as a later
// module's new slot. A packet thus runs every module exactly once, in order.
func (d *dispatcher) compact(h int) error {
	var stale uint64 // slots cleared from the mask since the last wait, their entries kept
	flush := func() error {
		if stale == 0 {
			return nil
		}
		if err := d.waitRuns(); err != nil {
			return fmt.Errorf("compact dispatcher: %w", err)
		}
		for s := range DispatcherSlots {
			if stale&(1<<s) != 0 {
				if err := d.empty(h, s); err != nil {
					return fmt.Errorf("compact dispatcher: %w", err)
				}
			}
		}
		stale = 0
		return nil
	}
	t := 0
	for s := range DispatcherSlots {
		e := d.slots[h][s]
		if e == nil {
			continue
		}
		if s != t {
			if stale&(1<<t) != 0 {
				if err := flush(); err != nil {
					return err
				}
			}
			old := e.plug[h]
			st := d.slotStat(h, s)
			pl, err := d.attach(h, t, e.hookPrograms()[h])
			if err != nil {
				return errors.Join(fmt.Errorf("compact dispatcher: %w", err), flush())
			}
			if err := d.setMask(h, d.mask[h]&^(1<<s)|1<<t); err != nil {
				return errors.Join(err, d.empty(h, t), flush())
			}
			pl.base = runStat{old.base.runs + st.runs, old.base.ns + st.ns}
			d.slots[h][s], d.slots[h][t], e.plug[h] = nil, e, pl
			stale |= 1 << s
		}
		t++
	}
	return flush()
}

// waitRuns returns once every dispatcher run that started before it was called has ended. The
// kernel offers no such wait for program arrays: an update of a map-of-maps from user space
// waits for an RCU grace period (maybe_wait_bpf_programs), and TC programs run in RCU
// read-side sections, so one such update is the wait.
func (d *dispatcher) waitRuns() error {
	if err := d.grace.Put(uint32(0), d.graceInner); err != nil {
		return fmt.Errorf("wait for running packets: %w", err)
	}
	return nil
}

// slotStat sums a slot's per-CPU statistics.
func (d *dispatcher) slotStat(h, slot int) runStat {
	var vs []dispatcherDispStat
	var st runStat
	if err := d.objs.DispStats.Lookup(uint32(h*DispatcherSlots+slot), &vs); err != nil {
		return st
	}
	for _, v := range vs {
		st.runs += v.Runs
		st.ns += v.Ns
	}
	return st
}

// stat is e's run statistics on hook h, counted by the dispatcher.
func (d *dispatcher) stat(e *entry, h int) runStat {
	pl := e.plug[h]
	if pl == nil {
		return runStat{}
	}
	st := d.slotStat(h, pl.slot)
	return runStat{st.runs + pl.base.runs, st.ns + pl.base.ns}
}

// own is the dispatcher program's own run statistics on hook h: the kernel's count less what
// its slots took.
func (d *dispatcher) own(h int) (runStat, error) {
	st, err := d.progs[h].Stats()
	if err != nil {
		return runStat{}, err
	}
	out := runStat{st.RunCount, uint64(st.Runtime.Nanoseconds())}
	for s := range DispatcherSlots {
		out.ns -= min(out.ns, d.slotStat(h, s).ns)
	}
	return out, nil
}

// attachVeth attaches both dispatcher programs to in's veth.
func (d *dispatcher) attachVeth(node *netsetup.Node, in *netsetup.Instance) (*attachment, error) {
	a := &attachment{in: in}
	err := node.NS.Do(func() error {
		var err error
		if a.ingress, err = link.AttachTCX(link.TCXOptions{Interface: in.VethIndex, Program: d.progs[hookIn], Attach: ebpf.AttachTCXIngress}); err != nil {
			return fmt.Errorf("attach chain dispatcher to %s ingress: %w", in.Veth, err)
		}
		if a.egress, err = link.AttachTCX(link.TCXOptions{Interface: in.VethIndex, Program: d.progs[hookOut], Attach: ebpf.AttachTCXEgress}); err != nil {
			return fmt.Errorf("attach chain dispatcher to %s egress: %w", in.Veth, err)
		}
		return nil
	})
	if err != nil {
		return nil, errors.Join(tcxError(err, in), a.close())
	}
	return a, nil
}

// close detaches the dispatcher from every veth and releases it; modules are unplugged first.
func (d *dispatcher) close() error {
	counting.remove(d)
	var ats []*attachment
	for _, a := range d.at {
		ats = append(ats, a)
	}
	err := parallelpkg.Do(len(ats), attachWorkers, func(i int) error { return ats[i].close() })
	clear(d.at)
	return errors.Join(err, d.closeMaps())
}

// expand names the programs in the dispatcher's active slots on hook h, in slot order, as
// the kernel's program array holds them.
func (d *dispatcher) expand(h int) ([]string, error) {
	var out []string
	for s := range DispatcherSlots {
		if d.mask[h]&(1<<s) == 0 {
			continue
		}
		var id uint32
		if err := d.arrays[h].Lookup(uint32(s), &id); err != nil {
			return out, fmt.Errorf("read dispatcher slot %d: %w", s, err)
		}
		out = append(out, programName(ebpf.ProgramID(id)))
	}
	return out, nil
}

// counting tells every dispatcher whether BPF run time is counted (CountRunTime), so that it
// times its slots: the kernel counts the dispatcher, not the extensions it jumps to.
var counting = &countState{disps: map[*dispatcher]struct{}{}}

type countState struct {
	mu    sync.Mutex
	n     int
	disps map[*dispatcher]struct{}
}

func (c *countState) add(d *dispatcher) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.disps[d] = struct{}{}
	_ = d.objs.DispCount.Set(uint32(min(c.n, 1)))
}

func (c *countState) remove(d *dispatcher) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.disps, d)
}

// change adds delta to the number of holders of CountRunTime and tells the dispatchers.
func (c *countState) change(delta int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.n += delta
	for d := range c.disps {
		_ = d.objs.DispCount.Set(uint32(min(c.n, 1)))
	}
}

// countCloser ends one CountRunTime.
type countCloser struct {
	once sync.Once
	st   io.Closer
}

func (c *countCloser) Close() error {
	var err error
	c.once.Do(func() {
		counting.change(-1)
		err = c.st.Close()
	})
	return err
}

// Dispatch returns an ingress dispatcher, attached nowhere, that runs progs (tcx/ingress
// programs) in order: for BPF test runs of a chain, as the benchmarks make them. Its close
// releases it; the programs stay the caller's.
func Dispatch(progs ...*ebpf.Program) (*ebpf.Program, func() error, error) {
	if len(progs) > DispatcherSlots {
		return nil, nil, fmt.Errorf("%w: at most %d programs", ErrChainFull, DispatcherSlots)
	}
	d, err := newDispatcher()
	if err != nil {
		return nil, nil, err
	}
	var mask uint64
	for i, p := range progs {
		if err := d.arrays[hookIn].Put(uint32(i), p); err != nil {
			return nil, nil, errors.Join(fmt.Errorf("dispatch program %d: %w", i, err), d.close())
		}
		mask |= 1 << i
	}
	if err := d.setMask(hookIn, mask); err != nil {
		return nil, nil, errors.Join(err, d.close())
	}
	return d.progs[hookIn], d.close, nil
}
