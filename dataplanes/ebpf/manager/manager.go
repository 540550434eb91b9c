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
	at      map[int]*attachment // by bridge-side veth ifindex
	node    []nodeLink          // programs on the node's own links (NodeAttacher)
	uses    []int               // ids of the modules whose maps it uses (Linker)
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

// MaxModules is how many modules a chain holds: the kernel runs at most 63 programs on one
// TCX hook (BPF_MPROG_MAX - 1) and every module puts one program on each hook. A dispatcher
// program that runs several modules would raise it; chainRoom is the one place that checks it.
const MaxModules = 63

// ErrChainFull is returned when a chain has MaxModules modules already, or the kernel refuses
// one more program on a hook (ERANGE) (HTTP 409).
var ErrChainFull = fmt.Errorf("at most %d modules per chain", MaxModules)

// chainRoom says whether a chain of n modules takes one more.
func chainRoom(n int) error {
	if n >= MaxModules {
		return fmt.Errorf("%w: %d are deployed; delete one first (DELETE /ebpf/{id})", ErrChainFull, n)
	}
	return nil
}

// New starts a manager for node that creates the modules of catalogue by name (usually
// dataplanes/ebpf/modules.Catalogue(); the manager keeps a copy). It subscribes to the node's
// registry: instances created later get every module's programs, in deployment order, before
// they carry traffic.
func New(node *netsetup.Node, catalogue Catalogue) (*Manager, error) {
	if node == nil {
		return nil, errors.New("manager: no node")
	}
	if err := catalogue.validate(); err != nil {
		return nil, fmt.Errorf("manager: module catalogue: %w", err)
	}
	m := &Manager{node: node, catalogue: maps.Clone(catalogue), nextID: 1}
	m.unsubscribe = node.Registry.Subscribe(m.onEvent)
	return m, nil
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
		if st, err := p.prog.Stats(); err == nil {
			pi.RunCount, pi.RunTimeNs = st.RunCount, uint64(st.Runtime.Nanoseconds())
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
// two clock reads to every run of every BPF program on the machine.
func CountRunTime() (io.Closer, error) {
	st, err := ebpf.EnableStats(unix.BPF_STATS_RUN_TIME)
	if err != nil {
		return nil, fmt.Errorf("the kernel refused to count BPF run time (needs Linux 5.8 and CAP_SYS_ADMIN): %w", err)
	}
	return st, nil
}

// ProgramRuns returns the run statistics of every module's programs in chain order.
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
			st, err := p.prog.Stats()
			if err != nil {
				return nil, fmt.Errorf("run statistics of module %d's %s program: %w", e.id, p.hook, err)
			}
			hook := p.hook
			if p.link != "" {
				hook = p.link + "_" + hook
			}
			out = append(out, ProgramRun{Name: name + "_" + hook, Runs: st.RunCount, Runtime: st.Runtime})
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
	err = chainRoom(len(m.mods))
	m.mu.Unlock()
	if err != nil {
		return Info{}, fmt.Errorf("create module %s: %w", name, err)
	}
	mod, err := f(m.node, config)
	if err != nil {
		return Info{}, fmt.Errorf("create module %s: %w", name, err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return Info{}, errors.Join(errors.New("manager is closed"), mod.Close())
	}
	if err := chainRoom(len(m.mods)); err != nil {
		return Info{}, errors.Join(fmt.Errorf("create module %s: %w", name, err), mod.Close())
	}
	e := &entry{id: m.nextID, name: name, mod: mod, created: time.Now().UTC(), routes: mod.Routes(), at: map[int]*attachment{}}
	if err := m.link(e); err != nil {
		return Info{}, errors.Join(fmt.Errorf("create module %s: %w", name, err), mod.Close())
	}
	m.mods = append(m.mods, e)
	// Every attachment waits for an RCU grace period in the kernel: attach to many veths at
	// once so that the waits overlap.
	var mu sync.Mutex
	err = parallel(m.instances(), func(in *netsetup.Instance) error {
		a, err := m.attach(e, in)
		if err == nil {
			mu.Lock()
			e.at[in.VethIndex] = a
			mu.Unlock()
		}
		return err
	})
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
	err := parallel(ins, func(in *netsetup.Instance) error { return e.at[in.VethIndex].close() })
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
		switch {
		case errors.Is(err, ebpf.ErrNotSupported):
			err = fmt.Errorf("this kernel lacks TCX (Linux 6.6 or newer is needed): %w", err)
		case errors.Is(err, unix.ERANGE):
			// Another program holds a slot on this hook, or a race: the same client error.
			err = fmt.Errorf("%w: the kernel refused one more program on %s: %w", ErrChainFull, in.Veth, err)
		}
		return nil, errors.Join(err, a.close())
	}
	if err := e.mod.Attached(in); err != nil {
		return nil, errors.Join(fmt.Errorf("module control plane refused %s: %w", in.Name, err), a.close())
	}
	return a, nil
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
