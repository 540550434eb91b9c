package manager

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	parallelpkg "github.com/edgebpf/edgebpf/internal/parallel"
	"github.com/edgebpf/edgebpf/netsetup"
	"github.com/edgebpf/edgebpf/subject"
)

// Manager runs eBPF modules on one node. All its state is behind one mutex; module
// creation, deletion and the node's instance events are serialised by it.
type Manager struct {
	node        *netsetup.Node
	catalogue   Catalogue // never changed after New
	chain       Chain
	disp        *dispatcher // in dispatcher mode
	unsubscribe func()

	mu     sync.Mutex
	mods   []*entry // deployment order = chain order
	nextID int
	closed bool
}

type entry struct {
	id      int
	name    string
	mod     Module
	created time.Time
	routes  []Route
	at      map[int]*attachment // by bridge-side veth ifindex; without links in dispatcher mode
	plug    [2]*plugged         // dispatcher mode: the module's slots, ingress and egress
	node    []nodeLink          // programs on the node's own links (NodeAttacher), always TCX
	uses    []int               // ids of the modules whose maps it uses (Linker)
}

// hookPrograms returns e's ingress and egress programs, either nil.
func (e *entry) hookPrograms() [2]*ebpf.Program {
	in, eg := e.mod.Programs()
	return [2]*ebpf.Program{in, eg}
}

// attachment is a module's two TCX links on one veth.
type attachment struct {
	in      *netsetup.Instance
	ingress link.Link
	egress  link.Link
}

func (a *attachment) close() error {
	var errs []error
	for _, l := range []link.Link{a.ingress, a.egress} {
		if l != nil {
			errs = append(errs, l.Close())
		}
	}
	return errors.Join(errs...)
}

// ErrNotFound is returned for a module id that does not exist (HTTP 404).
var ErrNotFound = errors.New("no module with id")

// MaxModules is how many modules a chain holds in tcx mode: the kernel runs at most 63
// programs on one TCX hook (BPF_MPROG_MAX - 1) and every module puts one program on each
// hook. In dispatcher mode a chain holds DispatcherSlots. Manager.Limit says which applies;
// chainRoom is the one place that checks it.
const MaxModules = 63

// ErrChainFull is returned when a chain has Limit modules already, or the kernel refuses one
// more program on a hook (ERANGE) (HTTP 409).
var ErrChainFull = errors.New("the chain is full")

// Limit is how many modules a chain of this manager holds: MaxModules in tcx mode,
// DispatcherSlots in dispatcher mode.
func (m *Manager) Limit() int {
	if m.chain == ChainDispatcher {
		return DispatcherSlots
	}
	return MaxModules
}

// chainRoom says whether a chain of n modules takes one more.
func (m *Manager) chainRoom(n int) error {
	if n >= m.Limit() {
		return fmt.Errorf("%w: at most %d modules per chain (%s mode), %d are deployed; delete one first (DELETE /ebpf/{id})", ErrChainFull, m.Limit(), m.chain, n)
	}
	return nil
}

// Option configures a manager.
type Option func(*Manager)

// WithChain sets the chain mode (default DefaultChain).
func WithChain(c Chain) Option { return func(m *Manager) { m.chain = c } }

// New starts a manager for node that creates the modules of catalogue by name (usually
// dataplanes/ebpf/modules.Catalogue(); the manager keeps a copy). It subscribes to the node's
// registry: instances created later get every module's programs, in deployment order, before
// they carry traffic. In dispatcher mode it attaches the dispatcher to every instance's veth.
func New(node *netsetup.Node, catalogue Catalogue, opts ...Option) (*Manager, error) {
	if node == nil {
		return nil, errors.New("manager: no node")
	}
	if err := catalogue.validate(); err != nil {
		return nil, fmt.Errorf("manager: module catalogue: %w", err)
	}
	m := &Manager{node: node, catalogue: maps.Clone(catalogue), nextID: 1, chain: DefaultChain}
	for _, o := range opts {
		o(m)
	}
	if _, err := ParseChain(string(m.chain)); err != nil {
		return nil, fmt.Errorf("manager: %w", err)
	}
	if m.chain == ChainDispatcher {
		if err := ProbeDispatcher(); err != nil {
			return nil, fmt.Errorf("manager: %w", err)
		}
		d, err := newDispatcher()
		if err != nil {
			return nil, fmt.Errorf("manager: %w", err)
		}
		m.disp = d
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.unsubscribe = node.Registry.Subscribe(m.onEvent)
	if m.disp != nil {
		if err := m.attachDispatcher(m.instances()); err != nil {
			m.unsubscribe()
			return nil, errors.Join(fmt.Errorf("manager: %w", err), m.disp.close())
		}
	}
	return m, nil
}

// Chain returns the manager's chain mode.
func (m *Manager) Chain() Chain { return m.chain }

// attachDispatcher attaches the dispatcher to the veths of ins it is not on yet.
func (m *Manager) attachDispatcher(ins []*netsetup.Instance) error {
	var mu sync.Mutex
	return parallel(ins, func(in *netsetup.Instance) error {
		mu.Lock()
		_, ok := m.disp.at[in.VethIndex]
		mu.Unlock()
		if ok {
			return nil
		}
		a, err := m.disp.attachVeth(m.node, in)
		if err == nil {
			mu.Lock()
			m.disp.at[in.VethIndex] = a
			mu.Unlock()
		}
		return err
	})
}

// Info describes a module as the API lists it.
type Info struct {
	ID       int           `json:"id"`
	Name     string        `json:"name"`
	Position int           `json:"position"` // 0 is the first program of every chain
	Config   any           `json:"config"`
	Created  time.Time     `json:"created"`
	Attached []string      `json:"attached"` // bridge-side veths, sorted
	Programs []ProgramInfo `json:"programs"`
}

// ProgramInfo names one of a module's programs as bpftool shows it, with the kernel's run
// statistics, which count only while BPF statistics are enabled (kernel.bpf_stats_enabled,
// or edgebpf run --bpf-stats) and are 0 otherwise.
type ProgramInfo struct {
	Hook      string `json:"hook"`           // tc_ingress (the service sends) or tc_egress (it receives)
	Link      string `json:"link,omitempty"` // a node link's name; empty for the instances' veths
	Name      string `json:"name"`
	ID        uint32 `json:"id"`
	RunCount  uint64 `json:"run_count"`
	RunTimeNs uint64 `json:"run_time_ns"`
}

// hookedProgram is one of a module's programs with its hook, ingress or egress.
type hookedProgram struct {
	hook string
	link string // a node link's name (NodeAttacher); empty on the veths
	prog *ebpf.Program
}

// programsOf returns e's programs on the veths, then those on node links.
func (m *Manager) programsOf(e *entry) []hookedProgram {
	out := hooked(e.mod)
	for _, nl := range e.node {
		out = append(out, hookedProgram{hook: hookName(nl.prog.Attach), link: nl.prog.Link, prog: nl.prog.Program})
	}
	return out
}

// hooked returns the module's programs that exist, ingress first.
func hooked(mod Module) []hookedProgram {
	in, eg := mod.Programs()
	var out []hookedProgram
	for _, p := range []hookedProgram{{hook: "ingress", prog: in}, {hook: "egress", prog: eg}} {
		if p.prog != nil {
			out = append(out, p)
		}
	}
	return out
}

// programStat is the run statistics of e's program p: the kernel's in tcx mode, the
// dispatcher's count of p's slot in dispatcher mode.
func (m *Manager) programStat(e *entry, p hookedProgram) (runStat, error) {
	if m.disp != nil && p.link == "" { // programs on node links are attached by TCX in either mode
		h := hookIn
		if p.hook == "egress" {
			h = hookOut
		}
		return m.disp.stat(e, h), nil
	}
	st, err := p.prog.Stats()
	if err != nil {
		return runStat{}, err
	}
	return runStat{st.RunCount, uint64(st.Runtime.Nanoseconds())}, nil
}

func (m *Manager) info(pos int, e *entry) Info {
	inf := Info{ID: e.id, Name: e.name, Position: pos, Config: e.mod.Config(), Created: e.created, Attached: []string{}, Programs: []ProgramInfo{}}
	for _, a := range e.at {
		inf.Attached = append(inf.Attached, a.in.Veth)
	}
	slices.Sort(inf.Attached)
	for _, p := range m.programsOf(e) {
		pi := ProgramInfo{Hook: "tc_" + p.hook, Link: p.link}
		if i, err := p.prog.Info(); err == nil {
			pi.Name = i.Name
			id, _ := i.ID()
			pi.ID = uint32(id)
		}
		if st, err := m.programStat(e, p); err == nil {
			pi.RunCount, pi.RunTimeNs = st.runs, st.ns
		}
		inf.Programs = append(inf.Programs, pi)
	}
	return inf
}

// ProgramRun is how often the kernel ran one of a module's programs and for how long in
// total; Name is <module>_<hook>, hook ingress (the service sends) or egress (it receives),
// <module>#<id>_<hook> when two modules share a name. The kernel counts only while BPF
// statistics are enabled (CountRunTime), which costs two clock reads per run.
type ProgramRun = subject.ProgramRun

// CountRunTime has the kernel count every BPF program's runs and run time until the returned
// closer is closed; the kernel also stops when the process exits, even killed. Counting adds
// two clock reads to every run of every BPF program on the machine. This process's chain
// dispatchers time their slots meanwhile, as the kernel does not count extension programs.
func CountRunTime() (io.Closer, error) {
	st, err := ebpf.EnableStats(unix.BPF_STATS_RUN_TIME)
	if err != nil {
		return nil, fmt.Errorf("the kernel refused to count BPF run time (needs Linux 5.8 and CAP_SYS_ADMIN): %w", err)
	}
	counting.change(1)
	return &countCloser{st: st}, nil
}

// ProgramRuns returns the run statistics of every module's programs in chain order; in
// dispatcher mode then the dispatcher's own, dispatcher_<hook>, without its modules' time.
func (m *Manager) ProgramRuns() ([]ProgramRun, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	names := map[string]int{}
	for _, e := range m.mods {
		names[e.name]++
	}
	var out []ProgramRun
	for _, e := range m.mods {
		name := e.name
		if names[e.name] > 1 {
			name += "#" + strconv.Itoa(e.id)
		}
		for _, p := range m.programsOf(e) {
			st, err := m.programStat(e, p)
			if err != nil {
				return nil, fmt.Errorf("run statistics of module %d's %s program: %w", e.id, p.hook, err)
			}
			hook := p.hook
			if p.link != "" {
				hook = p.link + "_" + hook
			}
			out = append(out, ProgramRun{Name: name + "_" + hook, Runs: st.runs, Runtime: time.Duration(st.ns)})
		}
	}
	if m.disp != nil {
		for h, hook := range []string{"ingress", "egress"} {
			st, err := m.disp.own(h)
			if err != nil {
				return nil, fmt.Errorf("run statistics of the %s dispatcher: %w", hook, err)
			}
			out = append(out, ProgramRun{Name: "dispatcher_" + hook, Runs: st.runs, Runtime: time.Duration(st.ns)})
		}
	}
	return out, nil
}

// List returns the modules in deployment order.
func (m *Manager) List() []Info {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]Info, 0, len(m.mods))
	for i, e := range m.mods {
		out = append(out, m.info(i, e))
	}
	return out
}

// Get returns one module.
func (m *Manager) Get(id int) (Info, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for i, e := range m.mods {
		if e.id == id {
			return m.info(i, e), nil
		}
	}
	return Info{}, fmt.Errorf("%w %d", ErrNotFound, id)
}

// Modules lists the names of the modules the manager can create, sorted.
func (m *Manager) Modules() []string { return m.catalogue.names() }

func (m *Manager) factory(name string) (Factory, error) {
	if err := validModuleName(name); err != nil {
		return nil, err
	}
	f, ok := m.catalogue[name]
	if !ok {
		return nil, fmt.Errorf("%w %q: available are %s", ErrUnknownModule, name, strings.Join(m.Modules(), ", "))
	}
	return f, nil
}

// Create loads the named module with its configuration and attaches it after every module
// already deployed, on every instance of the node. On any failure nothing stays attached.
func (m *Manager) Create(name string, config json.RawMessage) (Info, error) {
	f, err := m.factory(name)
	if err != nil {
		return Info{}, err
	}
	// Refuse early, before loading anything; checked again below, under the lock.
	m.mu.Lock()
	err = m.chainRoom(len(m.mods))
	m.mu.Unlock()
	if err != nil {
		return Info{}, fmt.Errorf("create module %s: %w", name, err)
	}
	mod, err := f(m.node, config, m.load)
	if err != nil {
		return Info{}, fmt.Errorf("create module %s: %w", name, err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return Info{}, errors.Join(errors.New("manager is closed"), mod.Close())
	}
	if err := m.chainRoom(len(m.mods)); err != nil {
		return Info{}, errors.Join(fmt.Errorf("create module %s: %w", name, err), mod.Close())
	}
	e := &entry{id: m.nextID, name: name, mod: mod, created: time.Now().UTC(), routes: mod.Routes(), at: map[int]*attachment{}}
	if err := m.link(e); err != nil {
		return Info{}, errors.Join(fmt.Errorf("create module %s: %w", name, err), mod.Close())
	}
	m.mods = append(m.mods, e)
	if m.disp != nil {
		err = m.plug(e)
	} else {
		err = m.attachAll(e)
	}
	if err == nil {
		err = m.attachNode(e)
	}
	if err != nil {
		m.mods = m.mods[:len(m.mods)-1]
		return Info{}, errors.Join(fmt.Errorf("create module %s: %w", name, err), m.release(e))
	}
	m.nextID++
	return m.info(len(m.mods)-1, e), nil
}

// load is the Load the manager's chain mode needs.
func (m *Manager) load(spec *ebpf.CollectionSpec, objs any) error {
	if m.disp != nil {
		return m.disp.load(spec, objs)
	}
	return LoadTCX(spec, objs)
}

// attachAll attaches e's programs to every instance's veth (tcx mode). Every attachment
// waits for an RCU grace period in the kernel: attach to many veths at once so that the waits
// overlap.
func (m *Manager) attachAll(e *entry) error {
	var mu sync.Mutex
	return parallel(m.instances(), func(in *netsetup.Instance) error {
		a, err := m.attach(e, in)
		if err == nil {
			mu.Lock()
			e.at[in.VethIndex] = a
			mu.Unlock()
		}
		return err
	})
}

// plug tells e's control plane about every instance, then puts e's programs into the
// dispatcher's next slots (dispatcher mode); on failure release undoes what was done.
func (m *Manager) plug(e *entry) error {
	for _, in := range m.instances() {
		if err := e.mod.Attached(in); err != nil {
			return fmt.Errorf("module control plane refused %s: %w", in.Name, err)
		}
		e.at[in.VethIndex] = &attachment{in: in}
	}
	return m.disp.plug(e)
}

// attachWorkers bounds how many veths are attached to or detached from at once.
const attachWorkers = 32

// parallel runs fn for every instance on up to attachWorkers goroutines and joins the errors.
func parallel(ins []*netsetup.Instance, fn func(*netsetup.Instance) error) error {
	return parallelpkg.Do(len(ins), attachWorkers, func(i int) error { return fn(ins[i]) })
}

// Delete detaches a module everywhere and closes it; the others keep their order.
func (m *Manager) Delete(id int) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	i := slices.IndexFunc(m.mods, func(e *entry) bool { return e.id == id })
	if i < 0 {
		return fmt.Errorf("%w %d", ErrNotFound, id)
	}
	e := m.mods[i]
	if d := m.usedBy(e); d != nil {
		return fmt.Errorf("%w: module %d (%s) uses the maps of module %d (%s): delete it first", ErrDependency, d.id, d.name, e.id, e.name)
	}
	m.mods = slices.Delete(m.mods, i, i+1)
	return m.release(e)
}

// DeleteAll deletes every module, last deployed first, and returns their ids.
func (m *Manager) DeleteAll() ([]int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.deleteAllLocked()
}

func (m *Manager) deleteAllLocked() ([]int, error) {
	var ids []int
	var errs []error
	for len(m.mods) > 0 {
		e := m.mods[len(m.mods)-1]
		m.mods = m.mods[:len(m.mods)-1]
		ids = append(ids, e.id)
		errs = append(errs, m.release(e))
	}
	return ids, errors.Join(errs...)
}

// Close deletes every module and stops following the node. It is idempotent.
func (m *Manager) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil
	}
	m.closed = true
	m.unsubscribe()
	_, err := m.deleteAllLocked()
	if m.disp != nil {
		err = errors.Join(err, m.disp.close())
	}
	return err
}

// release detaches e everywhere, tells its control plane, and closes it.
func (m *Manager) release(e *entry) error {
	nodeErr := e.detachNode() // closing a link needs no namespace
	var ats []*attachment
	for _, a := range e.at {
		ats = append(ats, a)
	}
	ins := make([]*netsetup.Instance, len(ats))
	for i, a := range ats {
		ins[i] = a.in
	}
	var err error
	if m.disp != nil {
		err = m.disp.unplug(e)
	} else {
		err = parallel(ins, func(in *netsetup.Instance) error { return e.at[in.VethIndex].close() })
	}
	for _, a := range ats {
		e.mod.Detached(a.in)
	}
	clear(e.at)
	if err = errors.Join(nodeErr, err, e.mod.Close()); err != nil {
		return fmt.Errorf("delete module %d (%s): %w", e.id, e.name, err)
	}
	return nil
}

func (m *Manager) instances() []*netsetup.Instance {
	var out []*netsetup.Instance
	for _, s := range m.node.Registry.Services() {
		for _, in := range m.node.Registry.Instances(s.Name) {
			if !remote(in) {
				out = append(out, in)
			}
		}
	}
	return out
}

// onEvent keeps every instance's chains complete: a new instance gets every module in
// deployment order; a removed one has its links closed first, then each control plane told.
func (m *Manager) onEvent(ev netsetup.Event) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed || ev.Instance == nil || remote(ev.Instance) {
		return nil // remote instances have no veth here: the proxy reaches them through the tunnel
	}
	if m.disp != nil {
		return m.onEventDispatched(ev)
	}
	switch ev.Kind {
	case netsetup.InstanceCreated:
		for _, e := range m.mods {
			if _, ok := e.at[ev.Instance.VethIndex]; ok {
				continue
			}
			a, err := m.attach(e, ev.Instance)
			if err != nil {
				for _, e2 := range m.mods {
					m.detach(e2, ev.Instance)
				}
				return fmt.Errorf("attach module %d (%s): %w", e.id, e.name, err)
			}
			e.at[ev.Instance.VethIndex] = a
		}
	case netsetup.InstanceRemoved:
		for _, e := range m.mods {
			m.detach(e, ev.Instance)
		}
	}
	return nil
}

// attach puts e's programs on in's veth at e's place in the chain: before the first later
// module already there, else at the tail, and tells e's control plane. The caller records
// the attachment in e.at (attach only reads other modules' attachments).
func (m *Manager) attach(e *entry, in *netsetup.Instance) (*attachment, error) {
	ingress, egress := e.mod.Programs()
	a := &attachment{in: in}
	err := m.node.NS.Do(func() error {
		var err error
		if ingress != nil {
			if a.ingress, err = link.AttachTCX(link.TCXOptions{Interface: in.VethIndex, Program: ingress,
				Attach: ebpf.AttachTCXIngress, Anchor: m.anchor(e, in, func(a *attachment) link.Link { return a.ingress })}); err != nil {
				return fmt.Errorf("attach tcx ingress to %s: %w", in.Veth, err)
			}
		}
		if egress != nil {
			if a.egress, err = link.AttachTCX(link.TCXOptions{Interface: in.VethIndex, Program: egress,
				Attach: ebpf.AttachTCXEgress, Anchor: m.anchor(e, in, func(a *attachment) link.Link { return a.egress })}); err != nil {
				return fmt.Errorf("attach tcx egress to %s: %w", in.Veth, err)
			}
		}
		return nil
	})
	if err != nil {
		return nil, errors.Join(tcxError(err, in), a.close())
	}
	if err := e.mod.Attached(in); err != nil {
		return nil, errors.Join(fmt.Errorf("module control plane refused %s: %w", in.Name, err), a.close())
	}
	return a, nil
}

// tcxError explains a TCX attach error a user can act on.
func tcxError(err error, in *netsetup.Instance) error {
	switch {
	case errors.Is(err, ebpf.ErrNotSupported):
		return fmt.Errorf("this kernel lacks TCX (Linux 6.6 or newer is needed): %w", err)
	case errors.Is(err, unix.ERANGE):
		// Another program holds a slot on this hook, or a race: the same client error.
		return fmt.Errorf("%w: at most %d modules per chain: the kernel refused one more program on %s: %w", ErrChainFull, MaxModules, in.Veth, err)
	}
	return err
}

// onEventDispatched keeps the chains complete in dispatcher mode: a new instance is made known
// to every module's control plane, then gets the dispatcher (which runs the whole chain); a
// removed one loses the dispatcher first, then each control plane is told.
func (m *Manager) onEventDispatched(ev netsetup.Event) error {
	in := ev.Instance
	switch ev.Kind {
	case netsetup.InstanceCreated:
		var errs []error
		for i, e := range m.mods {
			if err := e.mod.Attached(in); err != nil {
				errs = append(errs, fmt.Errorf("module %d (%s) control plane refused %s: %w", e.id, e.name, in.Name, err))
				for _, e2 := range m.mods[:i] {
					m.detach(e2, in)
				}
				return errors.Join(errs...)
			}
			e.at[in.VethIndex] = &attachment{in: in}
		}
		if err := m.attachDispatcher([]*netsetup.Instance{in}); err != nil {
			for _, e := range m.mods {
				m.detach(e, in)
			}
			return err
		}
	case netsetup.InstanceRemoved:
		if a, ok := m.disp.at[in.VethIndex]; ok {
			_ = a.close()
			delete(m.disp.at, in.VethIndex)
		}
		for _, e := range m.mods {
			m.detach(e, in)
		}
	}
	return nil
}

// anchor places e's link on in's veth before the link of the first module deployed after e
// that is already attached there, so chain order is deployment order whatever order the
// attachments happen in.
func (m *Manager) anchor(e *entry, in *netsetup.Instance, pick func(*attachment) link.Link) link.Anchor {
	i := slices.Index(m.mods, e)
	for _, later := range m.mods[i+1:] {
		if a, ok := later.at[in.VethIndex]; ok && pick(a) != nil {
			return link.BeforeLink(pick(a))
		}
	}
	return link.Tail()
}

func (m *Manager) detach(e *entry, in *netsetup.Instance) {
	a, ok := e.at[in.VethIndex]
	if !ok {
		return
	}
	_ = a.close()
	e.mod.Detached(in)
	delete(e.at, in.VethIndex)
}

// Module returns the module with the id, for code that drives it directly (benchmarks, the
// ebpf data plane).
func (m *Manager) Module(id int) (Module, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, e := range m.mods {
		if e.id == id {
			return e.mod, true
		}
	}
	return nil, false
}

// Routes returns the sub-routes of module id, if it exists.
func (m *Manager) Routes(id int) ([]Route, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, e := range m.mods {
		if e.id == id {
			return e.routes, true
		}
	}
	return nil, false
}
