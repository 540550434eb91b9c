package manager

import (
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
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
	// instance appears; modules are loaded as extensions that replace the dispatcher's slot
	// functions (freplace), so creating a module costs two extension attaches whatever the
	// number of instances. The dispatcher's slots are node-wide: every instance runs the
	// same chain.
	ChainDispatcher Chain = "dispatcher"
)

// ChainModes lists the chain modes, the default first.
var ChainModes = []Chain{ChainTCX, ChainDispatcher}

// ParseChain returns the chain mode named s ("" is the default, tcx).
func ParseChain(s string) (Chain, error) {
	switch Chain(s) {
	case "":
		return ChainTCX, nil
	case ChainTCX, ChainDispatcher:
		return Chain(s), nil
	}
	return "", fmt.Errorf("unknown chain mode %q: use tcx or dispatcher", s)
}

// DispatcherSlots is how many modules a dispatcher runs per hook; it holds MaxModules.
const DispatcherSlots = 64

// Load loads a module's BPF collection into objs, as bpf2go's LoadAndAssign does. The manager
// hands every Factory the Load of its chain mode: LoadTCX, or one that loads the same TCX
// programs as extensions of the node's dispatcher. A module loads its programs only through it.
type Load func(spec *ebpf.CollectionSpec, objs any) error

// LoadTCX loads spec's programs as they are, TCX programs; for modules used without a manager
// or by a manager in tcx mode.
func LoadTCX(spec *ebpf.CollectionSpec, objs any) error { return spec.LoadAndAssign(objs, nil) }

// ErrNoExtensions is returned in dispatcher mode when the kernel refuses BPF extension
// programs (BPF_PROG_TYPE_EXT, freplace), which the dispatcher's modules are.
var ErrNoExtensions = errors.New("this kernel refuses BPF extension programs (freplace), which --chain dispatcher needs (bpftool feature probe: program_type ext); use --chain tcx")

var probeOnce = sync.OnceValue(probeDispatcher)

// ProbeDispatcher says whether this kernel runs the dispatcher: it loads a dispatcher and the
// empty program as its extension, and attaches that to a slot. The answer is cached.
func ProbeDispatcher() error { return probeOnce() }

func probeDispatcher() error {
	d, err := newDispatcher()
	if err != nil {
		return err
	}
	defer d.close()
	spec, err := emptyprog.Spec()
	if err != nil {
		return err
	}
	var objs struct {
		Prog *ebpf.Program `ebpf:"empty_tc"`
	}
	if err := d.load(spec, &objs); err != nil {
		return fmt.Errorf("%w: %w", ErrNoExtensions, err)
	}
	defer objs.Prog.Close()
	l, err := link.AttachFreplace(d.progs[hookIn], slotName(0), objs.Prog)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrNoExtensions, err)
	}
	return l.Close()
}

// hookIndex numbers the hooks as the dispatcher does.
const (
	hookIn  = 0
	hookOut = 1
)

// dispatcher is a manager's pair of dispatcher programs, the veths they are attached to, and
// which module's program holds each slot.
type dispatcher struct {
	objs  dispatcherObjects
	progs [2]*ebpf.Program
	ids   [2]ebpf.ProgramID
	btfID [2]map[btf.TypeID]int // slot function's BTF id -> slot, per hook
	at    map[int]*attachment   // the dispatcher's TCX links by veth ifindex
	slots [2][DispatcherSlots]*entry
	mask  [2]uint64
	ncpu  int
}

// plugged is a module's place in the dispatcher on one hook.
type plugged struct {
	slot int
	link link.Link
	base runStat // runs counted in slots it held before (compaction moves modules)
}

type runStat struct {
	runs uint64
	ns   uint64
}

func slotName(i int) string { return fmt.Sprintf("disp_slot%d%d", i/8, i%8) }

func newDispatcher() (*dispatcher, error) {
	d := &dispatcher{at: map[int]*attachment{}, ncpu: ebpf.MustPossibleCPU()}
	if err := loadDispatcherObjects(&d.objs, nil); err != nil {
		return nil, fmt.Errorf("load chain dispatcher: %w", err)
	}
	d.progs = [2]*ebpf.Program{d.objs.DispIn, d.objs.DispOut}
	for h, p := range d.progs {
		ids, err := slotIDs(p)
		if err != nil {
			return nil, errors.Join(err, d.objs.Close())
		}
		d.btfID[h] = ids
		info, err := p.Info()
		if err != nil {
			return nil, errors.Join(fmt.Errorf("chain dispatcher info: %w", err), d.objs.Close())
		}
		d.ids[h], _ = info.ID()
	}
	counting.add(d)
	return d, nil
}

// slotIDs maps the BTF ids of p's slot functions to their slots.
func slotIDs(p *ebpf.Program) (map[btf.TypeID]int, error) {
	h, err := p.Handle()
	if err != nil {
		return nil, fmt.Errorf("chain dispatcher btf: %w", err)
	}
	defer h.Close()
	spec, err := h.Spec(nil)
	if err != nil {
		return nil, fmt.Errorf("chain dispatcher btf: %w", err)
	}
	out := map[btf.TypeID]int{}
	for i := range DispatcherSlots {
		var fn *btf.Func
		if err := spec.TypeByName(slotName(i), &fn); err != nil {
			return nil, fmt.Errorf("chain dispatcher slot %d: %w", i, err)
		}
		id, err := spec.TypeID(fn)
		if err != nil {
			return nil, fmt.Errorf("chain dispatcher slot %d: %w", i, err)
		}
		out[id] = i
	}
	return out, nil
}

// load loads spec's TCX programs as extensions of the dispatcher's first slot, ingress
// programs of disp_in, egress programs of disp_out; plug attaches them to their slots.
func (d *dispatcher) load(spec *ebpf.CollectionSpec, objs any) error {
	for name, ps := range spec.Programs {
		var h int
		switch {
		case ps.Type != ebpf.SchedCLS:
			return fmt.Errorf("program %s is a %s program; the dispatcher runs TCX programs", name, ps.Type)
		case ps.AttachType == ebpf.AttachTCXIngress:
			h = hookIn
		case ps.AttachType == ebpf.AttachTCXEgress:
			h = hookOut
		default:
			return fmt.Errorf("program %s is not a tcx/ingress or tcx/egress program", name)
		}
		ps.Type, ps.AttachType = ebpf.Extension, ebpf.AttachNone
		ps.AttachTarget, ps.AttachTo = d.progs[h], slotName(0)
	}
	return spec.LoadAndAssign(objs, nil)
}

// setMask publishes hook h's slot bits. The word lies in memory shared with the programs
// (the .bss map, mmapped) and is written with one aligned 8-byte store.
func (d *dispatcher) setMask(h int, mask uint64) error {
	d.mask[h] = mask
	if err := d.objs.DispMask.Set(d.mask); err != nil {
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

// attach replaces slot on hook h with p, its statistics zeroed first.
func (d *dispatcher) attach(h, slot int, p *ebpf.Program) (*plugged, error) {
	if err := d.objs.DispStats.Put(uint32(h*DispatcherSlots+slot), make([]dispatcherDispStat, d.ncpu)); err != nil {
		return nil, fmt.Errorf("reset dispatcher slot %d statistics: %w", slot, err)
	}
	l, err := link.AttachFreplace(d.progs[h], slotName(slot), p)
	if err != nil {
		return nil, fmt.Errorf("replace dispatcher slot %d: %w", slot, err)
	}
	return &plugged{slot: slot, link: l}, nil
}

// unplug takes e out of the chain: its bits first, so no packet reaches the program while
// its link closes.
func (d *dispatcher) unplug(e *entry) error {
	var errs []error
	for h, pl := range e.plug {
		if pl == nil {
			continue
		}
		errs = append(errs, d.setMask(h, d.mask[h]&^(1<<pl.slot)), pl.link.Close())
		d.slots[h][pl.slot], e.plug[h] = nil, nil
	}
	return errors.Join(errs...)
}

// compact moves hook h's modules to the lowest slots, keeping their order. A module moves
// from slot s to a lower free slot t with no module between them: its program is attached
// to t, then one mask store clears s and sets t, so a packet runs it exactly once, then the
// old link closes.
func (d *dispatcher) compact(h int) error {
	t := 0
	for s := range DispatcherSlots {
		e := d.slots[h][s]
		if e == nil {
			continue
		}
		if s != t {
			old := e.plug[h]
			st := d.slotStat(h, s)
			pl, err := d.attach(h, t, e.hookPrograms()[h])
			if err != nil {
				return fmt.Errorf("compact dispatcher: %w", err)
			}
			if err := d.setMask(h, d.mask[h]&^(1<<s)|1<<t); err != nil {
				return errors.Join(err, pl.link.Close())
			}
			pl.base = runStat{old.base.runs + st.runs, old.base.ns + st.ns}
			d.slots[h][s], d.slots[h][t], e.plug[h] = nil, e, pl
			if err := old.link.Close(); err != nil {
				return fmt.Errorf("compact dispatcher: %w", err)
			}
		}
		t++
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
	return errors.Join(err, d.objs.Close())
}

// expand names the programs running in the dispatcher's active slots on hook h, in slot
// order, as the kernel's freplace links say.
func (d *dispatcher) expand(h int, links map[ebpf.ProgramID]map[btf.TypeID]string) []string {
	bySlot := map[int]string{}
	for id, name := range links[d.ids[h]] {
		if s, ok := d.btfID[h][id]; ok {
			bySlot[s] = name
		}
	}
	var out []string
	for s := range DispatcherSlots {
		if name, ok := bySlot[s]; ok && d.mask[h]&(1<<s) != 0 {
			out = append(out, name)
		}
	}
	return out
}

// freplaceLinks asks the kernel for every extension link: target program -> BTF id of the
// replaced function -> the extension's name.
func freplaceLinks() (map[ebpf.ProgramID]map[btf.TypeID]string, error) {
	out := map[ebpf.ProgramID]map[btf.TypeID]string{}
	it := new(link.Iterator)
	defer it.Close()
	for it.Next() {
		info, err := it.Link.Info()
		if err != nil || info.Type != link.TracingType {
			continue
		}
		tr := info.Tracing()
		if tr == nil || tr.TargetObjectId == 0 {
			continue
		}
		target := ebpf.ProgramID(tr.TargetObjectId)
		if out[target] == nil {
			out[target] = map[btf.TypeID]string{}
		}
		out[target][btf.TypeID(tr.TargetBtfId)] = programName(info.Program)
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("list freplace links: %w", err)
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
