package manager

import (
	"errors"
	"fmt"
	"slices"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"

	"github.com/edgebpf/edgebpf/netsetup"
)

// Linker is implemented by a module that works on another module's maps, as the tunnel works
// on the proxy's sessions. The manager calls Link once, after the factory and before anything
// is attached, with find, which returns the latest deployed module of a name. A module found
// through find cannot be deleted while the one that found it exists (ErrDependency); a
// Linker that finds nothing it needs returns an error wrapping ErrDependency.
type Linker interface {
	Link(find func(name string) (Module, bool)) error
}

// NodeAttacher is implemented by a module with programs on the node's own links rather than
// on instances' veths (the tunnel's decapsulation on the worker's underlay link). The manager
// attaches them when the module is created, in the node namespace, in chain order among the
// modules' programs on the same link and hook, and detaches them when it is deleted.
type NodeAttacher interface {
	NodePrograms() []NodeProgram
}

// NodeProgram is one program on a link of the node namespace.
type NodeProgram struct {
	Link    string          // the link's name, for listings
	Index   int             // its ifindex in the node namespace
	Attach  ebpf.AttachType // ebpf.AttachTCXIngress or ebpf.AttachTCXEgress
	Program *ebpf.Program
}

// ErrDependency is returned when a module needs another that is not deployed, or when a
// module to delete is used by another (HTTP 409).
var ErrDependency = errors.New("module dependency")

// nodeLink is one attached NodeProgram.
type nodeLink struct {
	prog NodeProgram
	link link.Link
}

func hookName(a ebpf.AttachType) string {
	if a == ebpf.AttachTCXEgress {
		return "egress"
	}
	return "ingress"
}

// link lets a Linker module find the modules deployed before it and records what it uses.
func (m *Manager) link(e *entry) error {
	l, ok := e.mod.(Linker)
	if !ok {
		return nil
	}
	return l.Link(func(name string) (Module, bool) {
		for i := len(m.mods) - 1; i >= 0; i-- {
			if d := m.mods[i]; d != e && d.name == name {
				e.uses = append(e.uses, d.id)
				return d.mod, true
			}
		}
		return nil, false
	})
}

// usedBy returns the module that uses e's maps, if any.
func (m *Manager) usedBy(e *entry) *entry {
	for _, d := range m.mods {
		if slices.Contains(d.uses, e.id) {
			return d
		}
	}
	return nil
}

// attachNode puts e's node programs on their links at e's place in the chain.
func (m *Manager) attachNode(e *entry) error {
	na, ok := e.mod.(NodeAttacher)
	if !ok {
		return nil
	}
	return m.node.NS.Do(func() error {
		for _, p := range na.NodePrograms() {
			l, err := link.AttachTCX(link.TCXOptions{Interface: p.Index, Program: p.Program, Attach: p.Attach, Anchor: m.nodeAnchor(e, p)})
			if err != nil {
				return fmt.Errorf("attach tcx %s to %s: %w", hookName(p.Attach), p.Link, err)
			}
			e.node = append(e.node, nodeLink{prog: p, link: l})
		}
		return nil
	})
}

// nodeAnchor places e's link before the link of the first later module on the same link and
// hook, else at the tail, as anchor does on veths.
func (m *Manager) nodeAnchor(e *entry, p NodeProgram) link.Anchor {
	i := slices.Index(m.mods, e)
	for _, later := range m.mods[i+1:] {
		for _, nl := range later.node {
			if nl.prog.Index == p.Index && nl.prog.Attach == p.Attach {
				return link.BeforeLink(nl.link)
			}
		}
	}
	return link.Tail()
}

// detachNode closes e's node links.
func (e *entry) detachNode() error {
	var errs []error
	for _, nl := range e.node {
		errs = append(errs, nl.link.Close())
	}
	e.node = nil
	return errors.Join(errs...)
}

// remote says the instance runs on another worker of a cluster: it has no veth on this node.
func remote(in *netsetup.Instance) bool { return in.Remote() }
